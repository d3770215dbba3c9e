using Notice.Vlm;

namespace Notice.Core.Patching;

/// <summary>
/// Where a patch is written. Each site names one hook point per layer of a model's text side
/// (BLIP's text encoder, LLaVA's language model) and, for head sites, one head's slice of it.
/// Each architecture has its own list (<see cref="For"/>): a name means what the paper's figures
/// mean by it for that model, so `mlp` is BLIP's layer output but LLaVA's MLP output.
/// </summary>
/// <param name="Name">the name users type (--site) and results carry</param>
/// <param name="HookPoint">the hook point, "{l}" standing for the layer</param>
/// <param name="PerHead">true when a unit patches one head's slice of a per-head hook point</param>
/// <param name="OriginalKind">what the original NOTICE code calls it (kind, with attn_head for heads)</param>
public sealed record PatchSite(string Name, string HookPoint, bool PerHead, string OriginalKind, string Description)
{
    /// <summary>The whole layer's output, LayerNorm(MLP + residual): what the original calls `output`
    /// and the paper's figures label MLP.</summary>
    public static readonly PatchSite Mlp = new("mlp", "text.blocks.{l}.resid_post", false, "output",
        "layer output (hidden state after MLP, residual and LayerNorm); the paper's MLP");

    /// <summary>The self-attention context (heads concatenated, before the output projection).</summary>
    public static readonly PatchSite Attn = new("attn", "text.blocks.{l}.attn.z", false, "attention_block",
        "self-attention context, all heads, before the output projection");

    /// <summary>The cross-attention context (heads concatenated, before the output projection).</summary>
    public static readonly PatchSite Cross = new("cross", "text.blocks.{l}.cross.z", false, "crossattention_block",
        "cross-attention context, all heads, before the output projection");

    /// <summary>The bare MLP output, before its residual add and LayerNorm (no original counterpart).</summary>
    public static readonly PatchSite MlpOut = new("mlp-out", "text.blocks.{l}.mlp.out", false, "(none)",
        "bare MLP output, before residual and LayerNorm");

    public static readonly PatchSite AttnHeads = new("heads:attn", "text.blocks.{l}.attn.z", true, "attention_block + attn_head",
        "one self-attention head's slice of the context");

    public static readonly PatchSite CrossHeads = new("heads:cross", "text.blocks.{l}.cross.z", true, "crossattention_block + attn_head",
        "one cross-attention head's slice of the context");

    /// <summary>BLIP's sites.</summary>
    public static IReadOnlyList<PatchSite> All { get; } = [Mlp, Attn, Cross, MlpOut, AttnHeads, CrossHeads];

    /// <summary>LLaVA: the decoder layer's output (the residual stream after the layer).</summary>
    public static readonly PatchSite LlavaLayer = new("layer", "text.blocks.{l}.resid_post", false, "None (the whole decoder layer)",
        "decoder-layer output: the residual stream after attention and MLP");

    /// <summary>LLaVA: the self-attention output after o_proj. Restoring it at one position restores
    /// o_proj's input there too (o_proj acts per position), which is what the original hooks.</summary>
    public static readonly PatchSite LlavaAttn = new("attn", "text.blocks.{l}.attn.out", false, "attention_block",
        "self-attention output (after o_proj, before the residual add)");

    /// <summary>LLaVA: the MLP output, before its residual add.</summary>
    public static readonly PatchSite LlavaMlp = new("mlp", "text.blocks.{l}.mlp.out", false, "mlp_block",
        "MLP output, before the residual add");

    /// <summary>LLaVA's sites; the head site is BLIP's heads:attn (one head's slice of attn.z, before o_proj).</summary>
    public static IReadOnlyList<PatchSite> Llava { get; } = [LlavaLayer, LlavaAttn, LlavaMlp, AttnHeads];

    /// <summary>The sites of one architecture.</summary>
    public static IReadOnlyList<PatchSite> For(VlmArchitecture architecture) =>
        architecture == VlmArchitecture.Llava ? Llava : All;

    public string Hook(int layer) => HookPoint.Replace("{l}", layer.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>Hook points with a per-head shape ([B,T,H,Dh]): whole-module patches there write every head.</summary>
    public bool HookIsPerHead => HookPoint.EndsWith(".z", StringComparison.Ordinal);

    /// <summary>A BLIP site by name.</summary>
    public static PatchSite Parse(string name) => Parse(name, VlmArchitecture.Blip);

    /// <summary>A site of <paramref name="architecture"/> by the name users type.</summary>
    public static PatchSite Parse(string name, VlmArchitecture architecture) =>
        For(architecture).FirstOrDefault(s => s.Name == name)
        ?? throw new ArgumentException($"unknown site '{name}' for {VlmModel.DisplayName(architecture)}; expected one of {string.Join(", ", For(architecture).Select(s => s.Name))}");

    public override string ToString() => Name;
}
