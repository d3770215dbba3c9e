using Notice.Core.Families.Blip;
using System.Diagnostics;
using Notice.Core.Patching;
using Notice.Vlm.Blip;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Benchmarks;

public sealed record BenchResult(string Model, int Samples, int PromptTokens, long FastUnits, double FastSeconds, int PlainUnits, double PlainSeconds, long PeakMemoryBytes, int Threads)
{
    public double FastUnitsPerSecond => FastUnits / FastSeconds;
    public double PlainUnitsPerSecond => PlainUnits / PlainSeconds;
    public double Ratio => FastUnitsPerSecond / PlainUnitsPerSecond;
}

/// <summary>`notice bench --method atp`: attribution patching against the exact fast path on one head sweep.</summary>
/// <param name="PrepareSeconds">per sample: the clean and corrupt runs both methods start from</param>
/// <param name="Spearman">mean over samples of the rank correlation of the units' exact and estimated logit_diff</param>
public sealed record AtpBenchResult(string Model, int Samples, int PromptTokens, long Units, double ExactSeconds, double AtpSeconds, double PrepareSeconds,
    double Spearman, long PeakMemoryBytes, int Threads)
{
    public double ExactUnitsPerSecond => Units / ExactSeconds;
    public double AtpUnitsPerSecond => Units / AtpSeconds;

    /// <summary>Matmul FLOPs per unit counted from the shapes (<see cref="Flops"/>); 0 where the bench does not count them.</summary>
    public double ExactFlopsPerUnit { get; init; }
    public double AtpFlopsPerUnit { get; init; }

    /// <summary>This machine's matmul GFLOP/s in <see cref="DType"/> on the same threads (a 2048 x 2048 matmul); 0 where not measured.</summary>
    public double MatmulPeakGflops { get; init; }

    /// <summary>The dtype the model ran in.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    public double ExactGflops => ExactFlopsPerUnit * Units / ExactSeconds / 1e9;
    public double AtpGflops => AtpFlopsPerUnit * Units / AtpSeconds / 1e9;
}

/// <summary>
/// Head-wise cross-attention patching over every prompt position and layer, with random weights at
/// a given shape: units per second of the fast path (clean/corrupt once per sample, cached image
/// keys/values, patched runs from the cached layer input, batched) against the plain path (three
/// full forward passes per unit, vision encoder included, as the original).
/// </summary>
public static class PatchingBenchmark
{
    public static BenchResult Run(BlipConfig config, string name, int samples, int plainUnits, int promptTokens = 12, int batchSize = 64, Action<string>? log = null)
    {
        torch.manual_seed(0);
        using var noGrad = torch.no_grad();
        log?.Invoke($"building {name} with random weights");
        using var model = new BlipForQuestionAnswering(config);
        model.eval();
        using var engine = new BlipPatchingEngine(model, new PatchingOptions { BatchSize = batchSize });
        var inputs = Enumerable.Range(0, samples).Select(i => RandomSample(config, i, promptTokens)).ToList();

        // The two paths take turns sample by sample, so a busy machine slows both alike.
        log?.Invoke($"fast path: {samples} samples x {promptTokens} positions x {config.Text.NumHiddenLayers} layers x {config.Text.NumAttentionHeads} heads; plain path: {plainUnits} units");
        long fastUnits = 0;
        int plainDone = 0;
        var fast = new Stopwatch();
        var plain = new Stopwatch();
        for (int i = 0; i < inputs.Count; i++)
        {
            fast.Start();
            using (var prepared = engine.Prepare(inputs[i], CorruptionMode.Image))
            {
                var units = AllHeadUnits(config, prepared.Positions);
                engine.Run(prepared, units);
                fastUnits += units.Count;
            }
            fast.Stop();
            int share = (plainUnits - plainDone) / (inputs.Count - i);
            using (var prepared = engine.Prepare(inputs[i], CorruptionMode.Image))
            {
                // Only the per-unit work is timed, as the original spends it.
                var units = AllHeadUnits(config, prepared.Positions).Skip(plainDone).Take(share).ToList();
                plain.Start();
                engine.RunPlain(prepared, units);
                plain.Stop();
                plainDone += units.Count;
            }
        }
        plainUnits = plainDone;
        return new BenchResult(name, samples, promptTokens, fastUnits, fast.Elapsed.TotalSeconds, plainUnits, plain.Elapsed.TotalSeconds,
            PeakMemory(), torch.get_num_threads());
    }

    /// <summary>
    /// Attribution patching against the exact fast path on the same head sweep (every prompt position
    /// x layer x head of heads:cross): per sample, the exact fast path's patched runs and AtP's one
    /// corrupt forward with gradients and one backward, taking turns; the clean and corrupt runs both
    /// start from (Prepare) are timed apart. Also the rank agreement of the two over the units.
    /// </summary>
    public static AtpBenchResult RunAtp(BlipConfig config, string name, int samples, int promptTokens = 12, int batchSize = 64, Action<string>? log = null)
    {
        torch.manual_seed(0);
        log?.Invoke($"building {name} with random weights");
        BlipForQuestionAnswering model;
        using (torch.no_grad()) model = new BlipForQuestionAnswering(config);
        using var _ = model;
        model.eval();
        using var engine = new BlipPatchingEngine(model, new PatchingOptions { BatchSize = batchSize });
        var inputs = Enumerable.Range(0, samples).Select(i => RandomSample(config, i, promptTokens)).ToList();
        log?.Invoke($"{samples} samples x {promptTokens} positions x {config.Text.NumHiddenLayers} layers x {config.Text.NumAttentionHeads} heads, exact fast path and atp");
        var prepare = new Stopwatch();
        var exact = new Stopwatch();
        var atp = new Stopwatch();
        long units = 0;
        var rhos = new List<double>();
        foreach (var input in inputs)
        {
            prepare.Start();
            using var prepared = engine.Prepare(input, CorruptionMode.Image);
            prepare.Stop();
            var all = AllHeadUnits(config, prepared.Positions);
            atp.Start();
            var estimates = engine.Estimate(prepared, all);
            atp.Stop();
            exact.Start();
            var results = engine.Run(prepared, all);
            exact.Stop();
            units += all.Count;
            rhos.Add(Analysis.MethodAgreement.Rank(results.Select(r => (double)r.Metrics.LogitDiff).ToArray(), estimates.Select(r => (double)r.Metrics.LogitDiff).ToArray()));
        }
        double perUnit(Func<BlipConfig, int, double> count) => count(config, promptTokens) / (promptTokens * config.Text.NumHiddenLayers * config.Text.NumAttentionHeads);
        double peak = Flops.MatmulPeakGflops();
        return new AtpBenchResult(name, samples, promptTokens, units, exact.Elapsed.TotalSeconds, atp.Elapsed.TotalSeconds, prepare.Elapsed.TotalSeconds / samples,
            rhos.Average(), PeakMemory(), torch.get_num_threads())
        {
            ExactFlopsPerUnit = perUnit(Flops.BlipExactAllPositions),
            AtpFlopsPerUnit = perUnit(Flops.BlipAtpAllPositions),
            MatmulPeakGflops = peak,
        };
    }

    private static List<PatchUnit> AllHeadUnits(BlipConfig config, int positions)
    {
        var units = new List<PatchUnit>();
        for (int p = 0; p < positions; p++)
            for (int l = 0; l < config.Text.NumHiddenLayers; l++)
                for (int h = 0; h < config.Text.NumAttentionHeads; h++)
                    units.Add(new PatchUnit(BlipSites.CrossHeads, l, h, p));
        return units;
    }

    private static PatchingInputs RandomSample(BlipConfig c, int i, int tokens)
    {
        var size = c.Vision.ImageSize;
        var clean = new ImageInput($"bench-{i}-clean", torch.randn(1, 3, size, size));
        var corrupt = new ImageInput($"bench-{i}-corrupt", torch.randn(1, 3, size, size));
        var ids = torch.randint(5, c.Text.VocabSize - 10, [1, tokens], dtype: ScalarType.Int64);
        return new PatchingInputs(clean, corrupt, ids, ids, 7, 9);
    }

    /// <summary>Peak resident memory of this process (VmHWM), where the OS reports it.</summary>
    /// <summary>Every layer x head of an engine at a prepared prompt's last position (where a causal
    /// model reads its answer): a causal decoder's head sweep.</summary>
    public static List<PatchUnit> LastPositionHeadUnits(IPatchingEngine engine, PatchSite heads, int positions)
    {
        var units = new List<PatchUnit>();
        for (int l = 0; l < engine.NumLayers; l++)
            for (int h = 0; h < engine.NumHeads; h++)
                units.Add(new PatchUnit(heads, l, h, positions - 1));
        return units;
    }

    /// <summary>
    /// A causal decoder's head sweep on the fast and the plain path, taking turns sample by sample so
    /// that a machine whose load changes over the run slows both alike. The fast path's time includes
    /// the clean and corrupt runs; the plain path's is its per-unit work only, as the original spends it.
    /// </summary>
    public static (long FastUnits, double FastSeconds, double PlainSeconds) TakeTurns(IPatchingEngine engine, IReadOnlyList<PatchingInputs> inputs,
        PatchSite heads, int plainUnits, Action<string>? log)
    {
        long fastUnits = 0;
        double fastSeconds = 0, plainSeconds = 0;
        for (int i = 0; i < inputs.Count; i++)
        {
            var step = Stopwatch.StartNew();
            using var prepared = engine.Prepare(inputs[i], CorruptionMode.Image);
            double prepare = step.Elapsed.TotalSeconds;
            var units = LastPositionHeadUnits(engine, heads, prepared.Positions);
            engine.Run(prepared, units);
            double fast = step.Elapsed.TotalSeconds;
            fastSeconds += fast;
            fastUnits += units.Count;

            int plain = plainUnits / inputs.Count + (i < plainUnits % inputs.Count ? 1 : 0);
            step.Restart();
            engine.RunPlain(prepared, units.Take(plain).ToList());
            plainSeconds += step.Elapsed.TotalSeconds;
            log?.Invoke($"  sample {i}: fast path {prepare:F1} s clean and corrupt runs + {fast - prepare:F1} s for {units.Count} units; " +
                        $"plain path {step.Elapsed.TotalSeconds:F1} s for {plain} units; peak resident {PeakMemory() / 1e9:F1} GB");
        }
        return (fastUnits, fastSeconds, plainSeconds);
    }

    public static long PeakMemory() => ProcessStatus("VmHWM") is > 0 and var peak ? peak : Process.GetCurrentProcess().PeakWorkingSet64;

    /// <summary>A size field of /proc/self/status ("VmHWM:\t14914412 kB") in bytes; 0 where there is none.</summary>
    public static long ProcessStatus(string field)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                    return long.Parse(line[(field.Length + 1)..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[0]) * 1024;
        }
        catch (IOException) { }
        return 0;
    }
}
