using Notice.Core.Patching;
using Notice.Vlm.Hooks;

namespace Notice.Core.Families.Qwen25Vl;

/// <summary>Qwen2.5-VL's sites, each per layer of its language model, named as LLaVA's are (the
/// fixture's `layer`, `attention_block`, `mlp_block` and `attention_block.head{h}`).</summary>
public static class Qwen25VlSites
{
    /// <summary>The decoder layer's output: the residual stream after attention and MLP.</summary>
    public static readonly PatchSite Layer = new("layer", HookName.Template(BlockHook.ResidPost), false);

    /// <summary>The self-attention output after o_proj (which has no bias: the same as restoring every head's z there).</summary>
    public static readonly PatchSite Attn = new("attn", HookName.Template(BlockHook.AttnOut), false);

    /// <summary>The MLP output, before its residual add.</summary>
    public static readonly PatchSite Mlp = new("mlp", HookName.Template(BlockHook.MlpOut), false);

    /// <summary>One query head's slice of attn.z, before o_proj (every query head, though K/V heads are shared).</summary>
    public static readonly PatchSite AttnHeads = new("heads:attn", HookName.Template(BlockHook.AttnZ), true);

    public static IReadOnlyList<PatchSite> All { get; } = [Layer, Attn, Mlp, AttnHeads];
}
