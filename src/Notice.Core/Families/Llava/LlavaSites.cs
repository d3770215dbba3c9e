using Notice.Core.Patching;
using Notice.Vlm.Hooks;

namespace Notice.Core.Families.Llava;

/// <summary>LLaVA-1.5's sites, each per layer of its language model. `mlp` here is the MLP's own
/// output (the original's `mlp_block`), unlike BLIP's `mlp`.</summary>
public static class LlavaSites
{
    /// <summary>The decoder layer's output: the residual stream after attention and MLP.</summary>
    public static readonly PatchSite Layer = new("layer", HookName.Template(BlockHook.ResidPost), false);

    /// <summary>The self-attention output after o_proj. Restoring it at one position restores o_proj's
    /// input there too (o_proj acts per position), which is what the original hooks.</summary>
    public static readonly PatchSite Attn = new("attn", HookName.Template(BlockHook.AttnOut), false);

    /// <summary>The MLP output, before its residual add.</summary>
    public static readonly PatchSite Mlp = new("mlp", HookName.Template(BlockHook.MlpOut), false);

    /// <summary>One self-attention head's slice of attn.z, before o_proj.</summary>
    public static readonly PatchSite AttnHeads = new("heads:attn", HookName.Template(BlockHook.AttnZ), true);

    public static IReadOnlyList<PatchSite> All { get; } = [Layer, Attn, Mlp, AttnHeads];
}
