using System.Diagnostics;
using Notice.Core.Families.Qwen25Vl;
using Notice.Core.Patching;
using Notice.Vlm.Qwen25Vl;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Benchmarks;

/// <summary>
/// Head-wise patching at the last prompt position (every layer x head) on Qwen2.5-VL with random
/// weights at a given shape: units per second of the fast path (clean/corrupt once per sample; each
/// patched run recomputes the last position only, from the patched layer up, against the cached
/// corrupt keys/values and the narrowed M-RoPE ids; batched) against the plain path (three full
/// forwards per unit, vision tower included).
/// </summary>
public static class Qwen25VlPatchingBenchmark
{
    /// <param name="textTokens">text tokens of each prompt (the image's tokens come on top)</param>
    /// <param name="imageSide">the (square) image's side in pixels after resizing, a multiple of 28</param>
    public static BenchResult Run(QwenConfig config, string name, int samples, int plainUnits, int textTokens = 32, int imageSide = 336,
        int batchSize = 64, Action<string>? log = null)
    {
        torch.manual_seed(0);
        using var noGrad = torch.no_grad();
        log?.Invoke($"building {name}");
        var build = Stopwatch.StartNew();
        using var model = new Qwen25VlForConditionalGeneration(config);
        log?.Invoke($"  built in {build.Elapsed.TotalSeconds:F1} s, resident {PatchingBenchmark.PeakMemory() / 1e9:F1} GB at peak so far");
        using var engine = new Qwen25VlPatchingEngine(model, new PatchingOptions { BatchSize = batchSize });
        var inputs = Enumerable.Range(0, samples).Select(i => RandomSample(config, i, textTokens, imageSide)).ToList();
        int length = (int)inputs[0].CleanIds.shape[1];

        log?.Invoke($"{samples} samples x {config.NumHiddenLayers} layers x {config.NumAttentionHeads} heads at the last of {length} positions " +
                    $"({length - textTokens} image tokens); {plainUnits} of those units on the plain path");
        var (fastUnits, fastSeconds, plainSeconds) = PatchingBenchmark.TakeTurns(engine, inputs, Qwen25VlSites.AttnHeads, plainUnits, log);
        return new BenchResult(name, samples, length, fastUnits, fastSeconds, plainUnits, plainSeconds, PatchingBenchmark.PeakMemory(), torch.get_num_threads());
    }

    /// <summary>A prompt shaped like the chat template (15 text tokens, &lt;|vision_start|&gt;, the image's
    /// tokens, &lt;|vision_end|&gt;, the rest) with random word ids, and two random images of one size.</summary>
    private static PatchingInputs RandomSample(QwenConfig c, int i, int textTokens, int imageSide)
    {
        var v = c.Vision;
        int grid = imageSide / v.PatchSize;
        int imageTokens = grid * grid / v.MergeUnit;
        ImageInput Image(string key) => new(key, torch.randn(grid * grid, v.PatchInputSize)) { Grid = torch.tensor(new long[] { 1, grid, grid }, new long[] { 1, 3 }) };
        int words = new[] { c.BosTokenId, c.EosTokenId, c.VisionStartTokenId, c.ImageTokenId }.Min();
        var ids = torch.randint(0, words, [1, textTokens + imageTokens], dtype: ScalarType.Int64);
        ids[0, 14] = c.VisionStartTokenId;
        ids[0].narrow(0, 15, imageTokens).fill_(c.ImageTokenId);
        ids[0, 15 + imageTokens] = c.VisionEndTokenId;
        return new PatchingInputs(Image($"bench-{i}-clean"), Image($"bench-{i}-corrupt"), ids, ids, 7, 9);
    }
}
