using System.Text.Json.Nodes;
using Notice.Core.Benchmarks;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Qwen25Vl;

namespace Notice.Tests;

/// <summary>notice bench --arch qwen25vl at a small shape: the benchmark runs, and the load test's
/// checkpoint is a sharded Hugging Face folder whose config.json reads back and that loads.</summary>
public sealed class Qwen25VlBenchTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-qwen-bench-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void BenchmarkTimesBothPaths()
    {
        var r = Qwen25VlPatchingBenchmark.Run(QwenConfigs.Small, "small", samples: 1, plainUnits: 2, textTokens: 20, imageSide: 112);
        Assert.Equal(4 * 8, r.FastUnits);                      // every layer x head at the last position
        Assert.Equal(20 + 16, r.PromptTokens);                 // 112 px: 8 x 8 patches = 16 image tokens
        Assert.True(r.FastUnitsPerSecond > 0 && r.PlainUnitsPerSecond > 0);
    }

    [Fact]
    public void LoadTestCheckpointIsShardedAndLoads()
    {
        var folder = Path.Combine(_dir, "ckpt");
        Directory.CreateDirectory(folder);
        var (parameters, bytes, shards) = Qwen25VlLoadTest.WriteRandomCheckpoint(QwenConfigs.Small, folder, shardBytes: 200_000);
        Assert.True(shards > 1);
        Assert.Equal(2 * parameters, bytes);
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "model.safetensors.index.json")))!;
        Assert.Equal(bytes, index["metadata"]!["total_size"]!.GetValue<long>());
        var small = QwenConfigs.Small;
        var read = QwenConfig.Load(Path.Combine(folder, "config.json"));   // config.json reads back as written
        Assert.Equal(small, read with { Vision = small.Vision, MropeSection = small.MropeSection });
        Assert.Equal(small.Vision, read.Vision with { FullAttBlockIndexes = small.Vision.FullAttBlockIndexes });
        Assert.Equal(small.MropeSection, read.MropeSection);
        Assert.Equal(small.Vision.FullAttBlockIndexes, read.Vision.FullAttBlockIndexes);
        using var store = TensorStore.Open(folder);
        Assert.Equal("BF16", store.Entry("model.embed_tokens.weight").DType);
        using var model = Qwen25VlForConditionalGeneration.Load(folder, TorchSharp.torch.ScalarType.BFloat16);
        Assert.Equal(TorchSharp.torch.ScalarType.BFloat16, model.DType);

        var result = Qwen25VlLoadTest.Run(QwenConfigs.Small, "small", Path.Combine(_dir, "run"));
        Assert.True(result.PeakBytes > 0);
        Assert.False(Directory.Exists(Path.Combine(_dir, "run")));   // deleted afterwards
    }
}
