using Notice.Core.Families;
using Notice.Core.Patching;
using Notice.Core.Tasks;

namespace Notice.Core.Experiments;

/// <summary>
/// How many units a (sample, site) will have, from the model's config and tokenizer alone (no
/// weights): a local run's progress total and the distributed run's totals. The backend plans the
/// exact units when it runs them.
/// </summary>
public sealed class UnitEstimator
{
    private readonly ExperimentSpec _spec;
    private readonly ModelFamily _family;
    private readonly Func<string, int> _allPositions;

    public ModelShape Shape { get; }

    public UnitEstimator(ExperimentSpec spec, ModelFamily? family = null)
    {
        _spec = spec;
        _family = family ?? ModelFamilies.Of(spec.ModelDir);
        Shape = _family.Shape(spec.ModelDir);
        _allPositions = _family.PromptPositionCounter(spec.ModelDir, spec.Patching.Compat);
    }

    /// <summary>The layers an experiment patches.</summary>
    public IReadOnlyList<int> Layers => _spec.Layers ?? Enumerable.Range(0, Shape.Layers).ToList();

    public long Units(PairRecord record, PatchSite site)
    {
        var selection = _family.Positions(site, _spec.Positions);
        long positions = selection.Kind switch
        {
            PositionKind.All or PositionKind.Default => _allPositions(record.Prompt),
            PositionKind.List => selection.List!.Length,
            _ => 1,
        };
        return positions * Layers.Count * (site.PerHead ? _spec.Heads?.Count ?? Shape.Heads : 1);
    }

    /// <summary>The result rows a (sample, site) will have under the experiment's method: one per unit,
    /// and for atp+exact one more per confirmed unit.</summary>
    public long Rows(PairRecord record, PatchSite site)
    {
        long units = Units(record, site);
        return _spec.Method == PatchMethod.AtpExact ? units + PatchMethods.ConfirmCount((int)Math.Min(units, int.MaxValue), _spec.ConfirmTop) : units;
    }
}
