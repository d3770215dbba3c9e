using Notice.Core.Benchmarks;
using Notice.Vlm.Blip;

namespace Notice.Cli;

internal static class Bench
{
    public static int Run(int samples, int plainUnits, bool small)
    {
        var (config, name) = small ? (BlipConfigs.Small, "small BLIP (random weights)") : (BlipConfigs.VqaBase, "BLIP at blip-vqa-base shapes (random weights)");
        var r = PatchingBenchmark.Run(config, name, samples, plainUnits, log: m => Console.Error.WriteLine(m));
        Console.WriteLine($"model:       {r.Model}");
        Console.WriteLine($"workload:    head-wise cross-attention patching, {r.Samples} samples x {r.PromptTokens} prompt tokens x every layer and head");
        Console.WriteLine($"machine:     {Environment.ProcessorCount} cores, {r.Threads} torch threads, CPU float32");
        Console.WriteLine($"fast path:   {r.FastUnits} units in {r.FastSeconds:F1} s = {r.FastUnitsPerSecond:F1} units/s");
        Console.WriteLine($"plain path:  {r.PlainUnits} units in {r.PlainSeconds:F1} s = {r.PlainUnitsPerSecond:F3} units/s");
        Console.WriteLine($"ratio:       {r.Ratio:F0}x");
        Console.WriteLine($"peak memory: {r.PeakMemoryBytes / (1024.0 * 1024 * 1024):F2} GiB");
        return 0;
    }

    /// <summary>Throughput with 1, 2, ... worker processes and the scaling efficiency against one.</summary>
    public static async Task<int> WorkersAsync(IReadOnlyList<int> counts, int repeat)
    {
        var root = Defaults.RepoRoot ?? throw new InvalidOperationException("bench --workers runs from the repository (Notice.sln not found)");
        var fixture = Path.Combine(root, "tests", "fixtures", "blip-tiny");
        var points = await Notice.Distributed.WorkerScalingBenchmark.RunAsync(root, fixture, Path.Combine(fixture, "pairs.jsonl"), repeat, counts, m => Console.Error.WriteLine(m));
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores; each worker a process with 1 torch thread; random BLIP (hidden 256, 4 layers, 8 heads, 96x96 images); redis-server on loopback");
        var one = points.FirstOrDefault(p => p.Workers == 1);
        foreach (var p in points)
        {
            var efficiency = one is null ? "" : $", scaling efficiency {p.UnitsPerSecond / (p.Workers * one.UnitsPerSecond):P0}";
            Console.WriteLine($"{p.Workers} worker(s): {p.Units} units in {p.Seconds:F1} s = {p.UnitsPerSecond:F1} units/s{efficiency}");
        }
        return 0;
    }
}
