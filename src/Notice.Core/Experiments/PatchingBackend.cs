using Notice.Core.Families;
using Notice.Core.Patching;

namespace Notice.Core.Experiments;

/// <summary>
/// A loaded model of one family, ready to patch: its sample encoder, its patching engine, and which
/// token positions a selection names in its prompts. Runners (local and distributed) use only this,
/// so they run every family alike. <see cref="ModelFamily.LoadBackend"/> makes one.
/// </summary>
public abstract class PatchingBackend : IDisposable
{
    public abstract ModelFamily Family { get; }
    public abstract SampleEncoder Encoder { get; }
    public abstract IPatchingEngine Engine { get; }
    public int NumLayers => Engine.NumLayers;
    public int NumHeads => Engine.NumHeads;

    /// <summary>The units of one (sample, mode, site); an ArgumentException says why there are none.</summary>
    public List<PatchUnit> Plan(PatchSite site, EncodedSample sample, IPreparedSample prepared, ExperimentSpec spec) =>
        UnitPlanner.Plan(site, NumLayers, NumHeads, Positions(site, sample, prepared.Positions), spec.Layers, spec.Heads, Family.Positions(site, spec.Positions));

    /// <summary>The positions of a prepared sample's prompt as this family reads them.</summary>
    protected abstract PromptPositions Positions(PatchSite site, EncodedSample sample, int positions);

    public abstract void Dispose();
}
