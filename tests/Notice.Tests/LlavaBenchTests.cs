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

/// <summary>notice bench --dtype: the LLaVA AtP bench runs its model in the dtype asked and says so;
/// a bad name, or --dtype on another bench, is one error line.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class LlavaBenchDTypeTests
{
    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliRun.RunAsync(Notice.Cli.Commands.BenchCommand.Create(), args);

    [Fact]
    public async Task LlavaAtpBenchRunsInBfloat16()
    {
        var (code, output, _) = await Run("bench", "--arch", "llava", "--method", "atp", "--small", "--samples", "1", "--dtype", "bfloat16");
        Assert.Equal(0, code);
        Assert.Contains("torch threads, CPU bfloat16", output);
        Assert.Contains("(bfloat16 2048 x 2048 matmul", output);
        // bfloat16's exact path is itself rounded (8-bit mantissa), so the agreement is below float32's 1.000.
        var rho = double.Parse(System.Text.RegularExpressions.Regex.Match(output, @"Spearman (-?[0-9.]+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(rho > 0.8, $"Spearman {rho}");
    }

    [Theory]
    [InlineData("--dtype: expected float32, float16 or bfloat16, found 'fp8'", "--arch", "llava", "--method", "atp", "--small", "--dtype", "fp8")]
    [InlineData("--dtype: the bench's dtype applies to --arch llava --method atp", "--arch", "blip", "--method", "atp", "--small", "--dtype", "bfloat16")]
    [InlineData("--dtype: the bench's dtype applies to --arch llava --method atp", "--arch", "llava", "--small", "--dtype", "float16")]
    [InlineData("--dtype: the bench's dtype applies to --arch llava --method atp", "--arch", "llava", "--load-test", "--small", "--dtype", "float32")]
    public async Task BadDTypeIsOneErrorLine(string message, params string[] args)
    {
        var (code, output, error) = await Run(["bench", .. args]);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Equal($"error: {message}", error.TrimEnd());
    }
}
