using System.Text.Json.Nodes;
using Notice.Core.Benchmarks;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Llava;

namespace Notice.Tests;

/// <summary>notice bench --arch llava at a small shape: the benchmark runs, and the load test's
/// checkpoint is a sharded Hugging Face folder that loads.</summary>
public sealed class LlavaBenchTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-llava-bench-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void BenchmarkTimesBothPaths()
    {
        var r = LlavaPatchingBenchmark.Run(LlavaConfigs.Small, "small", samples: 1, plainUnits: 2, promptTokens: 12);
        Assert.Equal(4 * 8, r.FastUnits);                      // every layer x head at the last position
        Assert.Equal(12 + LlavaConfigs.Small.NumImageFeatures - 1, r.PromptTokens);
        Assert.True(r.FastUnitsPerSecond > 0 && r.PlainUnitsPerSecond > 0);
    }

    [Fact]
    public void LoadTestCheckpointIsShardedAndLoads()
    {
        var folder = Path.Combine(_dir, "ckpt");
        Directory.CreateDirectory(folder);
        var (parameters, bytes, shards) = LlavaLoadTest.WriteRandomCheckpoint(LlavaConfigs.Small, folder, shardBytes: 200_000);
        Assert.True(shards > 1);
        Assert.Equal(2 * parameters, bytes);
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "model.safetensors.index.json")))!;
        Assert.Equal(bytes, index["metadata"]!["total_size"]!.GetValue<long>());
        using var store = TensorStore.Open(folder);
        Assert.Equal("F16", store.Entry("language_model.lm_head.weight").DType);
        using var model = LlavaForConditionalGeneration.Load(folder, TorchSharp.torch.ScalarType.Float16);
        Assert.Equal(TorchSharp.torch.ScalarType.Float16, model.DType);

        var result = LlavaLoadTest.Run(LlavaConfigs.Small, "small", Path.Combine(_dir, "run"));
        Assert.True(result.PeakBytes > 0);
        Assert.False(Directory.Exists(Path.Combine(_dir, "run")));   // deleted afterwards
    }
}
