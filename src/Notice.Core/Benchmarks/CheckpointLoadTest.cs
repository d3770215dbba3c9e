using System.Diagnostics;
using System.Text.Json.Nodes;
using Notice.Vlm.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Benchmarks;

/// <summary>What loading a checkpoint cost.</summary>
/// <param name="CheckpointBytes">tensor bytes on disk (the index's total_size)</param>
/// <param name="RssBeforeBytes">resident memory just before loading</param>
/// <param name="PeakBytes">peak resident memory while loading (VmHWM, reset before the load)</param>
public sealed record LoadTestResult(string Model, long Parameters, long CheckpointBytes, int Shards, double WriteSeconds, double LoadSeconds,
    long RssBeforeBytes, long PeakBytes, bool PeakWasReset);

/// <summary>One family's part of a load test: its checkpoint's tensors, its config.json, its loader.</summary>
/// <param name="DType">the dtype the checkpoint is written in and loaded into (float16 or bfloat16)</param>
/// <param name="Tensors">the checkpoint's tensor names and shapes (from the model built on the meta device)</param>
/// <param name="SaveConfig">writes config.json to a path, with the torch_dtype name</param>
/// <param name="Load">loads the folder into <paramref name="DType"/></param>
public sealed record LoadTestModel(ScalarType DType, Func<IReadOnlyList<(string Name, long[] Shape)>> Tensors,
    Action<string, string> SaveConfig, Func<string, IDisposable> Load);

/// <summary>
/// Peak memory of loading a half-precision checkpoint: writes a checkpoint of random weights at the
/// given shapes as Hugging Face writes one (config.json, sharded safetensors, index), resets this
/// process's peak resident size, loads it, and deletes it again. LLaVA's and Qwen2.5-VL's load
/// tests are this with their model.
/// </summary>
public static class CheckpointLoadTest
{
    public static LoadTestResult Run(LoadTestModel model, string name, string folder, long shardBytes = 2L << 30, Action<string>? log = null)
    {
        if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any())
            throw new ArgumentException($"{folder} is not empty; the load test writes a checkpoint there and deletes it afterwards");
        Directory.CreateDirectory(folder);
        try
        {
            var clock = Stopwatch.StartNew();
            var (parameters, bytes, shards) = WriteRandomCheckpoint(model, folder, shardBytes, log);
            double write = clock.Elapsed.TotalSeconds;

            GC.Collect();
            bool reset = ResetPeak();
            long before = PatchingBenchmark.ProcessStatus("VmRSS");
            log?.Invoke($"loading {bytes / 1e9:F1} GB into {DTypeName(model.DType)} (resident now {before / 1e9:F2} GB)");
            clock.Restart();
            using (model.Load(folder))
            {
                double load = clock.Elapsed.TotalSeconds;
                return new LoadTestResult(name, parameters, bytes, shards, write, load, before, PatchingBenchmark.ProcessStatus("VmHWM"), reset);
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// Writes config.json, model-0000k-of-0000n.safetensors (the model's dtype, normal(0, 0.02)) and
    /// model.safetensors.index.json. One shard's tensors at a time exist in memory.
    /// </summary>
    public static (long Parameters, long Bytes, int Shards) WriteRandomCheckpoint(LoadTestModel model, string folder, long shardBytes, Action<string>? log = null)
    {
        var tensors = model.Tensors().OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        long element = model.DType is ScalarType.Float16 or ScalarType.BFloat16 ? 2 : throw new ArgumentException($"the load test writes half precision, not {model.DType}");

        // Shards planned up front: their count is part of every file name.
        var shards = new List<List<(string Name, long[] Shape)>> { new() };
        long current = 0, total = 0, parameters = 0;
        foreach (var t in tensors)
        {
            long n = t.Shape.Aggregate(1L, (a, b) => a * b);
            if (current > 0 && current + element * n > shardBytes) { shards.Add(new()); current = 0; }
            shards[^1].Add(t);
            current += element * n;
            total += element * n;
            parameters += n;
        }

        var weightMap = new JsonObject();
        torch.manual_seed(0);
        for (int s = 0; s < shards.Count; s++)
        {
            string file = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            log?.Invoke($"writing {file} ({shards[s].Count} tensors)");
            using var scope = torch.NewDisposeScope();
            var data = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var t in shards[s])
            {
                using var temporaries = torch.NewDisposeScope();   // the float32 draws go as soon as they are converted
                data[t.Name] = (torch.randn(t.Shape, ScalarType.Float32) * 0.02).to(model.DType).MoveToOuterDisposeScope();
                weightMap[t.Name] = file;
            }
            SafeTensorsFile.Write(Path.Combine(folder, file), data, new Dictionary<string, string> { ["format"] = "pt" });
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), index.ToJsonString());
        model.SaveConfig(Path.Combine(folder, "config.json"), DTypeName(model.DType));
        return (parameters, total, shards.Count);
    }

    private static string DTypeName(ScalarType dtype) => Notice.Vlm.VlmModel.DTypeName(dtype);

    /// <summary>Resets the kernel's peak resident size of this process to its current size (Linux
    /// 4.0+: "5" to /proc/self/clear_refs), so the peak that follows is the load's own.</summary>
    private static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }
}
