using System.Diagnostics;
using System.Text.Json.Nodes;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Qwen25Vl;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Benchmarks;

/// <summary>
/// Peak memory of loading a bfloat16 Qwen2.5-VL checkpoint into bfloat16: writes a checkpoint of random
/// weights at the given shapes as Hugging Face writes one (config.json, sharded safetensors, index),
/// resets this process's peak resident size, loads it, and deletes it again.
/// </summary>
public static class Qwen25VlLoadTest
{
    public static LoadTestResult Run(QwenConfig config, string name, string folder, long shardBytes = 2L << 30, Action<string>? log = null)
    {
        if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any())
            throw new ArgumentException($"{folder} is not empty; the load test writes a checkpoint there and deletes it afterwards");
        Directory.CreateDirectory(folder);
        try
        {
            var clock = Stopwatch.StartNew();
            var (parameters, bytes, shards) = WriteRandomCheckpoint(config, folder, shardBytes, log);
            double write = clock.Elapsed.TotalSeconds;

            GC.Collect();
            bool reset = ResetPeak();
            long before = PatchingBenchmark.ProcessStatus("VmRSS");
            log?.Invoke($"loading {bytes / 1e9:F1} GB into bfloat16 (resident now {before / 1e9:F2} GB)");
            clock.Restart();
            using (var model = Qwen25VlForConditionalGeneration.Load(folder, ScalarType.BFloat16))
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
    /// Writes config.json, model-0000k-of-0000n.safetensors (bfloat16, normal(0, 0.02)) and
    /// model.safetensors.index.json. The tensor names and shapes come from the model built on the
    /// meta device (no memory); one shard's tensors at a time exist in memory.
    /// </summary>
    public static (long Parameters, long Bytes, int Shards) WriteRandomCheckpoint(QwenConfig config, string folder, long shardBytes, Action<string>? log = null)
    {
        List<(string Name, long[] Shape)> tensors;
        using (var meta = new Qwen25VlForConditionalGeneration(config, ScalarType.BFloat16, new Device(DeviceType.META)))
            tensors = meta.StateTensors().Select(kv => (kv.Key, kv.Value.shape)).OrderBy(t => t.Key, StringComparer.Ordinal).ToList();

        // Shards planned up front: their count is part of every file name.
        var shards = new List<List<(string Name, long[] Shape)>> { new() };
        long current = 0, total = 0, parameters = 0;
        foreach (var t in tensors)
        {
            long n = t.Shape.Aggregate(1L, (a, b) => a * b);
            if (current > 0 && current + 2 * n > shardBytes) { shards.Add(new()); current = 0; }
            shards[^1].Add(t);
            current += 2 * n;
            total += 2 * n;
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
                data[t.Name] = (torch.randn(t.Shape, ScalarType.Float32) * 0.02).to(ScalarType.BFloat16).MoveToOuterDisposeScope();
                weightMap[t.Name] = file;
            }
            SafeTensorsFile.Write(Path.Combine(folder, file), data, new Dictionary<string, string> { ["format"] = "pt" });
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), index.ToJsonString());
        config.Save(Path.Combine(folder, "config.json"), "bfloat16");
        return (parameters, total, shards.Count);
    }

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
