using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>The NOTICE metrics from first-step (BLIP) or last-position (LLaVA) logits, in float32
/// and in the original's order of operations.</summary>
public static class MetricsCalculator
{
    public static SampleBaseline Baseline(Tensor cleanLogits, Tensor corruptLogits, long correct, long incorrect)
    {
        using var scope = NewDisposeScope();
        var z = cleanLogits.to(ScalarType.Float32).flatten();
        var zs = corruptLogits.to(ScalarType.Float32).flatten();
        return new SampleBaseline(correct, incorrect,
            z.softmax(-1)[correct].item<float>(), zs.softmax(-1)[correct].item<float>(),
            (z[correct] - z[incorrect]).item<float>(), (zs[correct] - zs[incorrect]).item<float>());
    }

    /// <summary>Metrics of each row of <paramref name="patchedLogits"/> [N, V].</summary>
    public static PatchMetrics[] Compute(Tensor patchedLogits, Tensor cleanLogits, Tensor corruptLogits, long correct, long incorrect)
    {
        using var scope = NewDisposeScope();
        var zp = patchedLogits.to(ScalarType.Float32);
        var z = cleanLogits.to(ScalarType.Float32).flatten();
        var zs = corruptLogits.to(ScalarType.Float32).flatten();
        var probPatched = zp.softmax(-1).select(1, correct);
        var probDiff = probPatched - zs.softmax(-1)[correct];
        var logitDiff = (zp.select(1, correct) - zp.select(1, incorrect)) - (zs[correct] - zs[incorrect]);
        var effect = logitDiff / ((z[correct] - z[incorrect]) - (zs[correct] - zs[incorrect]));
        var stacked = stack([probPatched, probDiff, logitDiff, effect], 1).cpu();
        var data = stacked.data<float>().ToArray();
        var result = new PatchMetrics[zp.shape[0]];
        for (int r = 0; r < result.Length; r++)
            result[r] = new PatchMetrics(data[4 * r], data[4 * r + 1], data[4 * r + 2], data[4 * r + 3]);
        return result;
    }
}
