using Notice.Core.Patching;
using Notice.Vlm.Hooks;

namespace Notice.Core.Families.Blip;

/// <summary>BLIP-VQA's sites, each per layer of its text encoder. Names mean what the paper's
/// figures mean by them: `mlp` is the layer output, which the original calls `output`.</summary>
public static class BlipSites
{
    /// <summary>The whole layer's output, LayerNorm(MLP + residual): the original's `output`, the paper's MLP.</summary>
    public static readonly PatchSite Mlp = new("mlp", HookName.Template(BlockHook.ResidPost), false);

    /// <summary>The self-attention context (heads concatenated, before the output projection): `attention_block`.</summary>
    public static readonly PatchSite Attn = new("attn", HookName.Template(BlockHook.AttnZ), false);

    /// <summary>The cross-attention context (heads concatenated, before the output projection): `crossattention_block`.</summary>
    public static readonly PatchSite Cross = new("cross", HookName.Template(BlockHook.CrossZ), false);

    /// <summary>The bare MLP output, before its residual add and LayerNorm (no original counterpart).</summary>
    public static readonly PatchSite MlpOut = new("mlp-out", HookName.Template(BlockHook.MlpOut), false);

    /// <summary>One self-attention head's slice of the context.</summary>
    public static readonly PatchSite AttnHeads = new("heads:attn", HookName.Template(BlockHook.AttnZ), true);

    /// <summary>One cross-attention head's slice of the context.</summary>
    public static readonly PatchSite CrossHeads = new("heads:cross", HookName.Template(BlockHook.CrossZ), true);

    /// <summary>Every BLIP site, in the paper's order (MLP, self-attention, cross-attention).</summary>
    public static IReadOnlyList<PatchSite> All { get; } = [Mlp, Attn, Cross, MlpOut, AttnHeads, CrossHeads];
}
