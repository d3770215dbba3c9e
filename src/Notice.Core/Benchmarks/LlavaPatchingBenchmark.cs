using Notice.Core.Families.Llava;
using System.Diagnostics;
using Notice.Core.Patching;
using Notice.Vlm;
using Notice.Vlm.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Benchmarks;

/// <summary>
/// Head-wise patching at the last prompt position (every layer x head) on LLaVA with random weights
/// at a given shape: units per second of the fast path (clean/corrupt once per sample; each patched
/// run recomputes the last position only, from the patched layer up, against the cached corrupt keys
/// and values; batched) against the plain path (three full forwards per unit, vision tower included,
/// as the original).
/// </summary>
public static class LlavaPatchingBenchmark
{
    /// <param name="promptTokens">text tokens of each prompt, &lt;image&gt; included (the merged sequence adds N - 1)</param>
    public static BenchResult Run(LlavaConfig config, string name, int samples, int plainUnits, int promptTokens = 24, int batchSize = 64, Action<string>? log = null)
    {
        torch.manual_seed(0);
        using var noGrad = torch.no_grad();
        log?.Invoke($"building {name}");
        var build = Stopwatch.StartNew();
        using var model = new LlavaForConditionalGeneration(config);
        log?.Invoke($"  built in {build.Elapsed.TotalSeconds:F1} s, resident {PatchingBenchmark.PeakMemory() / 1e9:F1} GB at peak so far");
        using var engine = new LlavaPatchingEngine(model, new PatchingOptions { BatchSize = batchSize });
        var inputs = Enumerable.Range(0, samples).Select(i => RandomSample(config, i, promptTokens)).ToList();
        int merged = promptTokens + config.NumImageFeatures - 1;

        log?.Invoke($"{samples} samples x {config.Text.NumHiddenLayers} layers x {config.Text.NumAttentionHeads} heads at the last of {merged} positions; {plainUnits} of those units on the plain path");
        // The two paths take turns sample by sample, so that a machine whose load changes over the
        // run slows both alike.
        var (fastUnits, fastSeconds, plainSeconds) = PatchingBenchmark.TakeTurns(engine, inputs, LlavaSites.AttnHeads, plainUnits, log);
        return new BenchResult(name, samples, merged, fastUnits, fastSeconds, plainUnits, plainSeconds,
            PatchingBenchmark.PeakMemory(), torch.get_num_threads());
    }

    /// <summary>
    /// Attribution patching against the exact fast path on the same last-position head sweep (every
    /// layer x head): per sample, AtP's one corrupt forward with gradients and one backward, and the
    /// exact fast path's patched runs; the clean and corrupt runs both start from (Prepare) are timed
    /// apart. Also the rank agreement of the two, and each path's floating-point operations from the
    /// shapes (<see cref="Flops"/>) against the machine's matmul peak in <paramref name="dtype"/>.
    /// </summary>
    /// <param name="dtype">the dtype the model is built and run in (float32, float16 or bfloat16); the
    /// images stay float32 and the vision tower converts them, as for a loaded model</param>
    public static AtpBenchResult RunAtp(LlavaConfig config, string name, int samples, int promptTokens = 24, int batchSize = 64, Action<string>? log = null,
        ScalarType dtype = ScalarType.Float32)
    {
        torch.manual_seed(0);
        log?.Invoke($"building {name} in {VlmModel.DTypeName(dtype)}");
        var build = Stopwatch.StartNew();
        LlavaForConditionalGeneration model;
        // Built in its dtype directly: no float32 copy first. The engine freezes the parameters.
        using (torch.no_grad()) model = new LlavaForConditionalGeneration(config, dtype);
        using var _ = model;
        model.eval();
        log?.Invoke($"  built in {build.Elapsed.TotalSeconds:F1} s, resident {PatchingBenchmark.PeakMemory() / 1e9:F1} GB at peak so far");
        using var engine = new LlavaPatchingEngine(model, new PatchingOptions { BatchSize = batchSize });
        var inputs = Enumerable.Range(0, samples).Select(i => RandomSample(config, i, promptTokens)).ToList();
        int merged = promptTokens + config.NumImageFeatures - 1;
        log?.Invoke($"{samples} samples x {config.Text.NumHiddenLayers} layers x {config.Text.NumAttentionHeads} heads at the last of {merged} positions, exact fast path and atp");
        var prepare = new Stopwatch();
        var exact = new Stopwatch();
        var atp = new Stopwatch();
        long units = 0;
        double exactFlops = 0, atpFlops = 0;
        var rhos = new List<double>();
        foreach (var input in inputs)
        {
            prepare.Start();
            using var prepared = engine.Prepare(input, CorruptionMode.Image);
            prepare.Stop();
            var all = PatchingBenchmark.LastPositionHeadUnits(engine, LlavaSites.AttnHeads, prepared.Positions);
            atp.Start();
            var estimates = engine.Estimate(prepared, all);
            atp.Stop();
            exact.Start();
            UnitResult[] results;
            using (torch.no_grad()) results = engine.Run(prepared, all);
            exact.Stop();
            units += all.Count;
            exactFlops += Flops.LlavaExactLastPosition(config.Text, merged);   // the merged sequence the last position attends over
            atpFlops += Flops.LlavaAtpLastPosition(config.Text, merged);
            rhos.Add(Analysis.MethodAgreement.Rank(results.Select(r => (double)r.Metrics.LogitDiff).ToArray(), estimates.Select(r => (double)r.Metrics.LogitDiff).ToArray()));
            log?.Invoke($"  sample {units / all.Count - 1}: prepare {prepare.Elapsed.TotalSeconds:F1} s, atp {atp.Elapsed.TotalSeconds:F2} s, exact {exact.Elapsed.TotalSeconds:F1} s so far; peak resident {PatchingBenchmark.PeakMemory() / 1e9:F1} GB");
        }
        // Read before the matmul peak's own operands can raise it.
        long peakMemory = PatchingBenchmark.PeakMemory();
        double peak = Flops.MatmulPeakGflops(dtype: dtype);
        return new AtpBenchResult(name, samples, merged, units, exact.Elapsed.TotalSeconds, atp.Elapsed.TotalSeconds, prepare.Elapsed.TotalSeconds / samples,
            rhos.Average(), peakMemory, torch.get_num_threads())
        {
            DType = dtype,
            ExactFlopsPerUnit = exactFlops / units,
            AtpFlopsPerUnit = atpFlops / units,
            MatmulPeakGflops = peak,
        };
    }

    /// <summary>A prompt shaped like llava-1.5's ("&lt;s&gt; USER : &lt;image&gt; \n ... ASSISTANT :") with random
    /// word ids, and two random images.</summary>
    private static PatchingInputs RandomSample(LlavaConfig c, int i, int tokens)
    {
        var size = c.Vision.ImageSize;
        var clean = new ImageInput($"bench-{i}-clean", torch.randn(1, 3, size, size));
        var corrupt = new ImageInput($"bench-{i}-corrupt", torch.randn(1, 3, size, size));
        var ids = torch.randint(3, Math.Min(c.ImageTokenIndex, c.Text.VocabSize), [1, tokens], dtype: ScalarType.Int64);
        ids[0, 0] = c.Text.BosTokenId;
        ids[0, 4] = c.ImageTokenIndex;
        return new PatchingInputs(clean, corrupt, ids, ids, 7, 9);
    }
}
