using MessagePack;
using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>How faithfully to reproduce the original NOTICE code's quirks.</summary>
public enum CompatMode
{
    /// <summary>Correct: padding masks applied; a text pair whose prompts differ in token length is refused;
    /// LLaVA modules restored from the same module's clean output (see <see cref="LlavaOriginalCompat"/>).</summary>
    Default,
    /// <summary>As the original. BLIP: no text attention mask, prompts right-padded to the longer one with
    /// [PAD] (attended), positions matched by index. LLaVA: every quirk in <see cref="LlavaOriginalCompat"/>.</summary>
    Original,
}

/// <summary>An image as the engine sees it: preprocessed pixels [1,3,H,W] and a key that identifies
/// its content, so its vision pass and cross-attention keys/values are computed once.</summary>
public sealed record ImageInput(string Key, Tensor Pixels)
{
    /// <summary>Processors that cut images into a variable number of patches (Qwen2.5-VL): the image's
    /// grid [1, 3] (t, h, w), Pixels then being its patch rows [N, C*T*P*P]; null otherwise.</summary>
    public Tensor? Grid { get; init; }
}

/// <summary>One sample's inputs for one corruption mode.</summary>
/// <param name="CleanIds">clean prompt ids [1, T]: BLIP's question; LLaVA's whole templated prompt, one &lt;image&gt; in it</param>
/// <param name="CorruptIds">corrupt prompt ids [1, T*] (text mode; ignored otherwise)</param>
/// <param name="CorrectId">the correct answer's token, whose logit the metrics read</param>
public sealed record PatchingInputs(ImageInput CleanImage, ImageInput? CorruptImage, Tensor CleanIds, Tensor? CorruptIds, long CorrectId, long IncorrectId);

[MessagePackObject]
public sealed record PatchingOptions
{
    [Key(0)] public CompatMode Compat { get; init; } = CompatMode.Default;
    /// <summary>Units run in one forward pass (fast path).</summary>
    [Key(1)] public int BatchSize { get; init; } = 64;
    /// <summary>Noise mode: noise standard deviation as a multiple of the embeddings' own.</summary>
    [Key(2)] public double NoiseMultiple { get; init; } = 3.0;
    [Key(3)] public long NoiseSeed { get; init; } = 0;
    /// <summary>Images whose vision pass is kept (least recently used are dropped).</summary>
    [Key(4)] public int ImageCacheSize { get; init; } = 64;
    /// <summary>Causal models (fast path): at most this many rows x recomputed positions in one
    /// forward pass, so batches of early positions (long recomputed tails) stay within memory.</summary>
    [Key(5)] public int BatchTokens { get; init; } = 8192;
}

/// <summary>A text-mode pair whose prompts tokenise to different lengths, in the default mode.</summary>
public sealed class PromptLengthMismatchException(int clean, int corrupt, string hint = "use --compat original to pad as the original code did")
    : Exception($"the clean prompt has {clean} tokens and the corrupt prompt {corrupt}: text corruption needs equal token lengths so positions correspond ({hint})");
