using MessagePack;

namespace Notice.Core.Patching;

/// <summary>
/// Where a patch is written. Each site names one hook point per layer of a model's text side
/// (BLIP's text encoder, LLaVA's language model) and, for head sites, one head's slice of it. Each
/// model family lists its own sites (<see cref="Families.ModelFamily.Sites"/>): a name means what the
/// paper's figures mean by it for that model, so `mlp` is BLIP's layer output but LLaVA's MLP output.
/// </summary>
/// <param name="Name">the name users type (--sites) and results carry</param>
/// <param name="HookPoint">the hook point's template (<see cref="Notice.Vlm.Hooks.HookName.Template"/>), "{l}" standing for the layer</param>
/// <param name="PerHead">true when a unit patches one head's slice of a per-head hook point</param>
[MessagePackObject]
public sealed record PatchSite([property: Key(0)] string Name, [property: Key(1)] string HookPoint, [property: Key(2)] bool PerHead)
{
    public string Hook(int layer) => Notice.Vlm.Hooks.HookName.ForLayer(HookPoint, layer);

    public override string ToString() => Name;
}
