namespace Notice.Core.Patching;

/// <summary>A sample's clean and corrupt runs, done once, kept for its patched runs.</summary>
public interface IPreparedSample : IDisposable
{
    CorruptionMode Mode { get; }
    /// <summary>Token positions (input ids) that can be patched: positions 0..Positions-1.</summary>
    int Positions { get; }
    SampleBaseline Baseline { get; }
}

/// <summary>
/// Activation patching on one model: <see cref="Prepare"/> runs a sample's clean and corrupt passes
/// once; <see cref="Run"/> is the fast path (cached runs, batched units); <see cref="RunPlain"/>
/// recomputes everything per unit, as the original code does, and exists to check the fast path.
/// Both return results in the order of the units given. Every family's engine is a
/// <see cref="PatchingEngine{TSample}"/> (causal decoders: <see cref="CausalPatchingEngine{TSample}"/>).
/// </summary>
public interface IPatchingEngine : IDisposable
{
    int NumLayers { get; }
    int NumHeads { get; }
    IPreparedSample Prepare(PatchingInputs inputs, CorruptionMode mode);
    UnitResult[] Run(IPreparedSample sample, IReadOnlyList<PatchUnit> units);
    UnitResult[] RunPlain(IPreparedSample sample, IReadOnlyList<PatchUnit> units);
    /// <summary>Attribution patching: every unit's estimated metrics from one corrupt forward pass with
    /// gradients and one backward pass, whatever their sites and layers (see
    /// <see cref="PatchingEngine{TSample}.Estimate"/>). Results come back in the order of the units.</summary>
    UnitResult[] Estimate(IPreparedSample sample, IReadOnlyList<PatchUnit> units);
}
