using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>The metrics of <see cref="Metrics.All"/> from first-step (BLIP) or last-position (LLaVA)
/// logits, in float32.</summary>
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
        var terms = new MetricTerms(patchedLogits.to(ScalarType.Float32), cleanLogits.to(ScalarType.Float32).flatten(),
            corruptLogits.to(ScalarType.Float32).flatten(), correct, incorrect);
        var stacked = stack(Metrics.All.Select(m => m.Compute(terms)).ToArray(), 1).cpu();   // [N, metrics]
        var data = stacked.data<float>().ToArray();
        int k = Metrics.All.Count;
        var result = new PatchMetrics[terms.Patched.shape[0]];
        for (int r = 0; r < result.Length; r++) result[r] = new PatchMetrics(data[(k * r)..(k * (r + 1))]);
        return result;
    }

    /// <summary>Attribution patching's estimates of every metric for N units, from the first-order
    /// changes of the logit gap and of P(tau) [N]; a metric without an estimate is NaN.</summary>
    public static PatchMetrics[] Estimates(Tensor gapChange, Tensor probChange, SampleBaseline baseline)
    {
        using var scope = NewDisposeScope();
        var terms = new EstimateTerms(gapChange.to(ScalarType.Float32).cpu(), probChange.to(ScalarType.Float32).cpu(), baseline);
        long n = terms.GapChange.shape[0];
        var stacked = stack(Metrics.All.Select(m => m.Estimate is { } e ? e(terms) : full(n, float.NaN)).ToArray(), 1);   // [N, metrics]
        var data = stacked.data<float>().ToArray();
        int k = Metrics.All.Count;
        var result = new PatchMetrics[n];
        for (int r = 0; r < result.Length; r++) result[r] = new PatchMetrics(data[(k * r)..(k * (r + 1))]);
        return result;
    }
}
