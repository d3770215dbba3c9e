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
}
