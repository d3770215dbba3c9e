namespace Notice.Core.Patching;

/// <summary>
/// Where a patch is written. Each site names one hook point per layer of a model's text side
/// (BLIP's text encoder, LLaVA's language model) and, for head sites, one head's slice of it.
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

    public static IReadOnlyList<PatchSite> All { get; } = [Mlp, Attn, Cross, MlpOut, AttnHeads, CrossHeads];

    public string Hook(int layer) => HookPoint.Replace("{l}", layer.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>Hook points with a per-head shape ([B,T,H,Dh]): whole-module patches there write every head.</summary>
    public bool HookIsPerHead => HookPoint.EndsWith(".z", StringComparison.Ordinal);

    public static PatchSite Parse(string name) =>
        All.FirstOrDefault(s => s.Name == name)
        ?? throw new ArgumentException($"unknown site '{name}'; expected one of {string.Join(", ", All.Select(s => s.Name))}");

    public override string ToString() => Name;
}
