using System.Globalization;

namespace Notice.Vlm.Hooks;

/// <summary>A hook point inside one block (layer) of a stack: <c>{stack}.blocks.{l}.{point}</c>.</summary>
public enum BlockHook
{
    /// <summary>resid_pre: the residual stream entering the block [B, T, D].</summary>
    ResidPre,
    /// <summary>attn.pattern: self-attention probabilities [B, H, T, S], read-only.</summary>
    AttnPattern,
    /// <summary>attn.z: the per-head self-attention context [B, T, H, Dh] (the input of the output projection).</summary>
    AttnZ,
    /// <summary>attn.out: the self-attention block's output [B, T, D].</summary>
    AttnOut,
    /// <summary>cross.pattern: cross-attention probabilities [B, H, T, S] (BLIP), read-only.</summary>
    CrossPattern,
    /// <summary>cross.z: the per-head cross-attention context [B, T, H, Dh] (BLIP).</summary>
    CrossZ,
    /// <summary>cross.out: the cross-attention block's output [B, T, D] (BLIP).</summary>
    CrossOut,
    /// <summary>mlp.out: the MLP's output [B, T, D].</summary>
    MlpOut,
    /// <summary>resid_post: the block's output, the residual stream leaving it [B, T, D].</summary>
    ResidPost,
}

/// <summary>A hook name taken apart (<see cref="HookName.TryParse"/>).</summary>
/// <param name="Stack">the stack: <see cref="HookName.Text"/>, <see cref="HookName.Vision"/>,
/// <see cref="HookName.Decoder"/> or <see cref="HookName.Projector"/></param>
/// <param name="Layer">the block's layer; -1 for a point of the stack itself (embed, final_norm, projector.*)</param>
/// <param name="Point">the point within the block or stack: "attn.z", "resid_pre", "embed", "out", ...</param>
public readonly record struct HookNameParts(string Stack, int Layer, string Point)
{
    /// <summary>The block point, for a known point of a block; null otherwise.</summary>
    public BlockHook? Block => Layer >= 0 && HookName.TryBlockHook(Point, out var b) ? b : null;
}

/// <summary>
/// Every hook name, from one place (TransformerLens' utils.get_act_name): models name their hook
/// points with it and analysis code asks for them with it, so no hook name is typed twice. The scheme
/// (design.md §2, <see cref="HookContext"/>):
/// <code>
///   {stack}.embed                        text.embed, vision.embed, decoder.embed
///   {stack}.blocks.{l}.{point}           point: resid_pre, attn.pattern, attn.z, attn.out,
///                                        cross.pattern, cross.z, cross.out, mlp.out, resid_post
///   {stack}.final_norm                   text.final_norm (LLaVA: the final RMSNorm's output)
///   projector.in, projector.hidden, projector.out   (LLaVA's image-feature projector)
/// </code>
/// Stacks: <see cref="Text"/> (BLIP's text encoder, LLaVA's language model), <see cref="Vision"/>
/// (the vision encoder), <see cref="Decoder"/> (BLIP's answer decoder).
/// </summary>
public static class HookName
{
    /// <summary>The text side: BLIP's text encoder, LLaVA's language model.</summary>
    public const string Text = "text";
    /// <summary>The vision encoder (BLIP's ViT, LLaVA's CLIP tower).</summary>
    public const string Vision = "vision";
    /// <summary>BLIP's answer decoder.</summary>
    public const string Decoder = "decoder";
    /// <summary>LLaVA's projector from vision features to the language model's embeddings.</summary>
    public const string Projector = "projector";

    /// <summary>What stands for the layer in a <see cref="Template"/>.</summary>
    public const string LayerPlaceholder = "{l}";

    /// <summary>projector.in: the selected vision features entering LLaVA's projector [B, N, Dv].</summary>
    public const string ProjectorIn = Projector + ".in";
    /// <summary>projector.hidden: the projector's hidden activation [B, N, D].</summary>
    public const string ProjectorHidden = Projector + ".hidden";
    /// <summary>projector.out: the image features the language model reads [B, N, D].</summary>
    public const string ProjectorOut = Projector + ".out";

    /// <summary>vision.merger.ln_q: Qwen2.5-VL's merger input, RMS-normed [N, Dv].</summary>
    public const string VisionMergerNorm = Vision + ".merger.ln_q";
    /// <summary>vision.merger.out: Qwen2.5-VL's merged image tokens [N/4, D], window order.</summary>
    public const string VisionMergerOut = Vision + ".merger.out";

    private const string Blocks = ".blocks.";
    private const string EmbedPoint = "embed";
    private const string FinalNormPoint = "final_norm";

    private static readonly string[] Points =
        ["resid_pre", "attn.pattern", "attn.z", "attn.out", "cross.pattern", "cross.z", "cross.out", "mlp.out", "resid_post"];

    /// <summary>The point's name within a block: "resid_pre", "attn.z", ...</summary>
    public static string Point(BlockHook point) => Points[(int)point];

    /// <summary>The block point named <paramref name="point"/> ("attn.z", ...), if there is one.</summary>
    public static bool TryBlockHook(string point, out BlockHook hook)
    {
        int i = Array.IndexOf(Points, point);
        hook = (BlockHook)Math.Max(i, 0);
        return i >= 0;
    }

    /// <summary>{stack}.embed: the embeddings entering the first block [B, T, D] (LLaVA's text: the merged sequence).</summary>
    public static string Embed(string stack = Text) => stack + "." + EmbedPoint;

    /// <summary>{stack}.final_norm: the final norm's output after the last block (LLaVA: transformers' last hidden state).</summary>
    public static string FinalNorm(string stack = Text) => stack + "." + FinalNormPoint;

    /// <summary>{stack}.blocks.{layer}.{point}.</summary>
    public static string Block(int layer, BlockHook point, string stack = Text)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        return stack + Blocks + layer.ToString(CultureInfo.InvariantCulture) + "." + Point(point);
    }

    public static string ResidPre(int layer, string stack = Text) => Block(layer, BlockHook.ResidPre, stack);
    public static string AttnPattern(int layer, string stack = Text) => Block(layer, BlockHook.AttnPattern, stack);
    public static string AttnZ(int layer, string stack = Text) => Block(layer, BlockHook.AttnZ, stack);
    public static string AttnOut(int layer, string stack = Text) => Block(layer, BlockHook.AttnOut, stack);
    public static string CrossPattern(int layer, string stack = Text) => Block(layer, BlockHook.CrossPattern, stack);
    public static string CrossZ(int layer, string stack = Text) => Block(layer, BlockHook.CrossZ, stack);
    public static string CrossOut(int layer, string stack = Text) => Block(layer, BlockHook.CrossOut, stack);
    public static string MlpOut(int layer, string stack = Text) => Block(layer, BlockHook.MlpOut, stack);
    public static string ResidPost(int layer, string stack = Text) => Block(layer, BlockHook.ResidPost, stack);

    /// <summary>The block point of every layer 0..<paramref name="layers"/>-1, in layer order.</summary>
    public static string[] EveryLayer(BlockHook point, int layers, string stack = Text) =>
        Enumerable.Range(0, layers).Select(l => Block(l, point, stack)).ToArray();

    /// <summary>A block point with the layer left open: "{stack}.blocks.{l}.{point}" (<see cref="ForLayer"/> fills it in).</summary>
    public static string Template(BlockHook point, string stack = Text) => stack + Blocks + LayerPlaceholder + "." + Point(point);

    /// <summary>The hook name of <paramref name="template"/> (see <see cref="Template"/>) at <paramref name="layer"/>.</summary>
    public static string ForLayer(string template, int layer) =>
        template.Replace(LayerPlaceholder, layer.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);

    /// <summary>Takes a hook name (or a <see cref="Template"/>, whose layer reads as int.MaxValue) apart.</summary>
    public static bool TryParse(string name, out HookNameParts parts)
    {
        parts = default;
        int dot = name.IndexOf('.');
        if (dot <= 0 || dot == name.Length - 1) return false;
        var stack = name[..dot];
        var rest = name.AsSpan(dot + 1);
        if (!rest.StartsWith("blocks.", StringComparison.Ordinal))
        {
            parts = new HookNameParts(stack, -1, rest.ToString());
            return true;
        }
        rest = rest["blocks.".Length..];
        int end = rest.IndexOf('.');
        if (end <= 0 || end == rest.Length - 1) return false;
        var layerText = rest[..end];
        int layer;
        if (layerText.SequenceEqual(LayerPlaceholder)) layer = int.MaxValue;
        else if (!int.TryParse(layerText, NumberStyles.None, CultureInfo.InvariantCulture, out layer)) return false;
        parts = new HookNameParts(stack, layer, rest[(end + 1)..].ToString());
        return true;
    }

    /// <summary>Whether <paramref name="name"/> is <paramref name="point"/> of some block of
    /// <paramref name="stack"/> (null: of any stack). Allocation-free: fit for RecordWhere predicates.</summary>
    public static bool Is(string name, BlockHook point, string? stack = Text) =>
        IsBlock(name, stack, out var rest) && rest.Length > 1 && rest[0] == '.' && rest[1..].SequenceEqual(Point(point));

    public static bool IsResidPre(string name, string? stack = Text) => Is(name, BlockHook.ResidPre, stack);
    public static bool IsResidPost(string name, string? stack = Text) => Is(name, BlockHook.ResidPost, stack);

    /// <summary>An attention pattern (attn.pattern or cross.pattern) of a block of <paramref name="stack"/> (null: any).</summary>
    public static bool IsPattern(string name, string? stack = Text) =>
        Is(name, BlockHook.AttnPattern, stack) || Is(name, BlockHook.CrossPattern, stack);

    /// <summary>Whether <paramref name="name"/> is any point of a block of <paramref name="stack"/> (null: of any stack).</summary>
    public static bool IsBlock(string name, string? stack = Text) => IsBlock(name, stack, out _);

    /// <summary>A per-head point (attn.z, cross.z: [B, T, H, Dh]) of any stack, by name or <see cref="Template"/>:
    /// a whole-module patch there writes every head.</summary>
    public static bool IsPerHead(string nameOrTemplate) =>
        nameOrTemplate.EndsWith("." + Point(BlockHook.AttnZ), StringComparison.Ordinal) ||
        nameOrTemplate.EndsWith("." + Point(BlockHook.CrossZ), StringComparison.Ordinal);

    /// <summary>{stack}.blocks.{digits or {l}}, and what follows it (".attn.z").</summary>
    private static bool IsBlock(string name, string? stack, out ReadOnlySpan<char> rest)
    {
        rest = default;
        var s = name.AsSpan();
        int dot = stack is null ? s.IndexOf('.') : stack.Length;
        if (dot <= 0 || dot >= s.Length || s[dot] != '.' || (stack is not null && !s.StartsWith(stack, StringComparison.Ordinal))) return false;
        s = s[dot..];
        if (!s.StartsWith(Blocks, StringComparison.Ordinal)) return false;
        s = s[Blocks.Length..];
        int digits = s.StartsWith(LayerPlaceholder, StringComparison.Ordinal) ? LayerPlaceholder.Length : 0;
        if (digits == 0)
            while (digits < s.Length && char.IsAsciiDigit(s[digits])) digits++;
        if (digits == 0) return false;
        rest = s[digits..];
        return true;
    }
}
