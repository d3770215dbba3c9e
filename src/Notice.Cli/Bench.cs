using Notice.Core;
using Notice.Core.Benchmarks;
using Notice.Vlm;
using Notice.Vlm.Blip;
using Notice.Vlm.Llava;
using Notice.Vlm.Qwen25Vl;

namespace Notice.Cli;

internal static class Bench
{
    public static int Run(int samples, int plainUnits, bool small)
    {
        var (config, name) = small ? (BlipConfigs.Small, "small BLIP (random weights)") : (BlipConfigs.VqaBase, "BLIP at blip-vqa-base shapes (random weights)");
        var r = PatchingBenchmark.Run(config, name, samples, plainUnits, log: m => Console.Error.WriteLine(m));
        Print(r, $"head-wise cross-attention patching, {r.Samples} samples x {r.PromptTokens} prompt tokens x every layer and head");
        return 0;
    }

    /// <summary>BLIP: attribution patching against the exact fast path on a full head sweep.</summary>
    public static int RunAtp(int samples, bool small)
    {
        var (config, name) = small ? (BlipConfigs.Small, "small BLIP (random weights)") : (BlipConfigs.VqaBase, "BLIP at blip-vqa-base shapes (random weights)");
        var r = PatchingBenchmark.RunAtp(config, name, samples, log: m => Console.Error.WriteLine(m));
        PrintAtp(r, $"head-wise cross-attention, {r.Samples} samples x {r.PromptTokens} prompt tokens x every layer and head ({r.Units} units)");
        return 0;
    }

    /// <summary>LLaVA: attribution patching against the exact fast path on a last-position head sweep at llava-1.5-7b widths, reduced depth.</summary>
    public static int RunLlavaAtp(int samples, bool small, int layers, int visionLayers, TorchSharp.torch.ScalarType dtype = TorchSharp.torch.ScalarType.Float32)
    {
        var (config, name) = small
            ? (LlavaConfigs.Small, "small LLaVA (random weights)")
            : (LlavaConfigs.At7BWidths(layers, visionLayers), $"LLaVA at llava-1.5-7b widths, {layers} of 32 decoder layers, {visionLayers} of 24 vision layers (random weights)");
        var r = LlavaPatchingBenchmark.RunAtp(config, name, samples, log: m => Console.Error.WriteLine(m), dtype: dtype);
        PrintAtp(r, $"head-wise attention at the last position, {r.Samples} samples x every layer and head ({r.Units} units), {r.PromptTokens}-position sequences");
        return 0;
    }

    private static void PrintAtp(AtpBenchResult r, string workload)
    {
        Console.WriteLine($"model:       {r.Model}");
        Console.WriteLine($"workload:    {workload}");
        Console.WriteLine($"machine:     {Environment.ProcessorCount} cores, {r.Threads} torch threads, CPU {VlmModel.DTypeName(r.DType)}");
        Console.WriteLine($"prepare:     {r.PrepareSeconds:F2} s per sample (clean and corrupt runs, shared by both methods, not counted below)");
        Console.WriteLine($"exact fast:  {r.Units} units in {r.ExactSeconds:F1} s = {r.ExactUnitsPerSecond:F1} units/s");
        Console.WriteLine($"atp:         {r.Units} units in {r.AtpSeconds:F2} s = {r.AtpUnitsPerSecond:F0} units/s");
        Console.WriteLine($"ratio:       {r.AtpUnitsPerSecond / r.ExactUnitsPerSecond:F1}x");
        Console.WriteLine($"agreement:   Spearman {r.Spearman:F3} of exact and estimated logit_diff over the units (random weights)");
        Console.WriteLine($"peak memory: {Gib(r.PeakMemoryBytes)} (process peak resident set)");
        if (r.MatmulPeakGflops > 0)
        {
            Console.WriteLine($"matmul peak: {r.MatmulPeakGflops:F1} GFLOP/s ({VlmModel.DTypeName(r.DType)} 2048 x 2048 matmul as x W^T, {r.Threads} torch threads)");
            Console.WriteLine($"exact FLOPs: {r.ExactFlopsPerUnit / 1e9:F3} GFLOP per unit (matmuls of the recomputed layers and head) -> {r.ExactGflops:F1} GFLOP/s = {r.ExactGflops / r.MatmulPeakGflops:P0} of peak");
            Console.WriteLine($"atp FLOPs:   {r.AtpFlopsPerUnit / 1e9:F3} GFLOP per unit (forward in 2 rows + backward as 2x forward) -> {r.AtpGflops:F1} GFLOP/s = {r.AtpGflops / r.MatmulPeakGflops:P0} of peak");
        }
    }

    /// <summary>LLaVA: last-position head patching at llava-1.5-7b widths with reduced depth.</summary>
    public static int RunLlava(int samples, int plainUnits, bool small, int layers, int visionLayers)
    {
        var (config, name) = small
            ? (LlavaConfigs.Small, "small LLaVA (random weights)")
            : (LlavaConfigs.At7BWidths(layers, visionLayers), $"LLaVA at llava-1.5-7b widths, {layers} of 32 decoder layers, {visionLayers} of 24 vision layers (random weights)");
        var r = LlavaPatchingBenchmark.Run(config, name, samples, plainUnits, log: m => Console.Error.WriteLine(m));
        Print(r, $"head-wise attention patching at the last position, {r.Samples} samples x every layer and head, {r.PromptTokens}-position sequences");
        return 0;
    }

    /// <summary>Qwen2.5-VL: last-position head patching at Qwen2.5-VL-7B widths with reduced depth.</summary>
    public static int RunQwen(int samples, int plainUnits, bool small, int layers, int visionLayers, int imageSide)
    {
        var (config, name) = small
            ? (QwenConfigs.Small, "small Qwen2.5-VL (random weights)")
            : (QwenConfigs.At7BWidths(layers, visionLayers), $"Qwen2.5-VL at Qwen2.5-VL-7B widths, {layers} of 28 decoder layers, {visionLayers} of 32 vision blocks (random weights)");
        var r = Qwen25VlPatchingBenchmark.Run(config, name, samples, plainUnits, imageSide: small ? 112 : imageSide, log: m => Console.Error.WriteLine(m));
        Print(r, $"head-wise attention patching at the last position, {r.Samples} samples x every layer and head, {r.PromptTokens}-position sequences");
        return 0;
    }

    /// <summary>LLaVA: peak memory of loading a float16 llava-1.5-7b-shaped checkpoint into float16.</summary>
    public static int LoadTest(string folder, bool small)
    {
        var (config, name) = small ? (LlavaConfigs.Small, "small LLaVA (random float16 weights)") : (LlavaConfigs.Llava15_7B, "llava-1.5-7b shapes (random float16 weights)");
        var r = LlavaLoadTest.Run(config, name, folder, log: m => Console.Error.WriteLine(m));
        Console.WriteLine($"model:       {r.Model}, {r.Parameters / 1e9:F2} B parameters");
        Console.WriteLine($"checkpoint:  {r.CheckpointBytes / 1e9:F2} GB in {r.Shards} float16 shards, written in {r.WriteSeconds:F0} s (deleted afterwards)");
        Console.WriteLine($"load:        {r.LoadSeconds:F0} s into float16 on {Environment.ProcessorCount} cores");
        Console.WriteLine($"memory:      resident before {Gib(r.RssBeforeBytes)}, peak while loading {Gib(r.PeakBytes)}{(r.PeakWasReset ? "" : " (peak of the whole process: it could not be reset)")}");
        return 0;
    }

    /// <summary>Qwen2.5-VL: peak memory of loading a bfloat16 Qwen2.5-VL-7B-shaped checkpoint into bfloat16.</summary>
    public static int QwenLoadTest(string folder, bool small)
    {
        var (config, name) = small ? (QwenConfigs.Small, "small Qwen2.5-VL (random bfloat16 weights)") : (QwenConfigs.Qwen25Vl7B, "Qwen2.5-VL-7B shapes (random bfloat16 weights)");
        var r = Qwen25VlLoadTest.Run(config, name, folder, log: m => Console.Error.WriteLine(m));
        Console.WriteLine($"model:       {r.Model}, {r.Parameters / 1e9:F2} B parameters");
        Console.WriteLine($"checkpoint:  {r.CheckpointBytes / 1e9:F2} GB in {r.Shards} bfloat16 shards, written in {r.WriteSeconds:F0} s (deleted afterwards)");
        Console.WriteLine($"load:        {r.LoadSeconds:F0} s into bfloat16 on {Environment.ProcessorCount} cores");
        Console.WriteLine($"memory:      resident before {Gib(r.RssBeforeBytes)}, peak while loading {Gib(r.PeakBytes)}{(r.PeakWasReset ? "" : " (peak of the whole process: it could not be reset)")}");
        return 0;
    }

    private static void Print(BenchResult r, string workload)
    {
        Console.WriteLine($"model:       {r.Model}");
        Console.WriteLine($"workload:    {workload}");
        Console.WriteLine($"machine:     {Environment.ProcessorCount} cores, {r.Threads} torch threads, CPU float32");
        Console.WriteLine($"fast path:   {r.FastUnits} units in {r.FastSeconds:F1} s = {r.FastUnitsPerSecond:F1} units/s");
        Console.WriteLine($"plain path:  {r.PlainUnits} units in {r.PlainSeconds:F1} s = {r.PlainUnitsPerSecond:F3} units/s");
        Console.WriteLine($"ratio:       {r.Ratio:F0}x");
        Console.WriteLine($"peak memory: {Gib(r.PeakMemoryBytes)}");
    }

    /// <summary>Throughput with 1, 2, ... worker processes and the scaling efficiency against one.</summary>
    public static async Task<int> WorkersAsync(IReadOnlyList<int> counts, int repeat)
    {
        var root = RepoPaths.Root ?? throw new InvalidOperationException("bench --workers runs from the repository (Notice.sln not found)");
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
    private static string Gib(long bytes) => $"{bytes / (1024.0 * 1024 * 1024):F2} GiB";
}
