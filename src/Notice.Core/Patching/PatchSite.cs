using MessagePack;

namespace Notice.Core.Patching;

/// <summary>
/// Where a patch is written. Each site names one hook point per layer of a model's text side
/// (BLIP's text encoder, LLaVA's language model) and, for head sites, one head's slice of it. Each
/// model family lists its own sites (<see cref="Families.ModelFamily.Sites"/>): a name means what the
/// paper's figures mean by it for that model, so `mlp` is BLIP's layer output but LLaVA's MLP output.
/// </summary>
/// <param name="Name">the name users type (--sites) and results carry</param>
/// <param name="HookPoint">the hook point, "{l}" standing for the layer</param>
/// <param name="PerHead">true when a unit patches one head's slice of a per-head hook point</param>
[MessagePackObject]
public sealed record PatchSite([property: Key(0)] string Name, [property: Key(1)] string HookPoint, [property: Key(2)] bool PerHead)
{
    /// <summary>BLIP: the whole layer's output, LayerNorm(MLP + residual): what the original calls
    /// `output` and the paper's figures label MLP.</summary>
    public static readonly PatchSite Mlp = new("mlp", "text.blocks.{l}.resid_post", false);

    /// <summary>BLIP: the self-attention context (heads concatenated, before the output projection).</summary>
    public static readonly PatchSite Attn = new("attn", "text.blocks.{l}.attn.z", false);

    /// <summary>BLIP: the cross-attention context (heads concatenated, before the output projection).</summary>
    public static readonly PatchSite Cross = new("cross", "text.blocks.{l}.cross.z", false);

    /// <summary>BLIP: the bare MLP output, before its residual add and LayerNorm (no original counterpart).</summary>
    public static readonly PatchSite MlpOut = new("mlp-out", "text.blocks.{l}.mlp.out", false);

    /// <summary>One self-attention head's slice of the context (BLIP and LLaVA).</summary>
    public static readonly PatchSite AttnHeads = new("heads:attn", "text.blocks.{l}.attn.z", true);

    /// <summary>BLIP: one cross-attention head's slice of the context.</summary>
    public static readonly PatchSite CrossHeads = new("heads:cross", "text.blocks.{l}.cross.z", true);

    /// <summary>LLaVA: the decoder layer's output (the residual stream after attention and MLP).</summary>
    public static readonly PatchSite LlavaLayer = new("layer", "text.blocks.{l}.resid_post", false);

    /// <summary>LLaVA: the self-attention output after o_proj. Restoring it at one position restores
    /// o_proj's input there too (o_proj acts per position), which is what the original hooks.</summary>
    public static readonly PatchSite LlavaAttn = new("attn", "text.blocks.{l}.attn.out", false);

    /// <summary>LLaVA: the MLP output, before its residual add.</summary>
    public static readonly PatchSite LlavaMlp = new("mlp", "text.blocks.{l}.mlp.out", false);

    public string Hook(int layer) => HookPoint.Replace("{l}", layer.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public override string ToString() => Name;
}
