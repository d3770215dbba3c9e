using Notice.Core.Patching;

namespace Notice.Core.Experiments;

/// <summary>The units of one (sample, mode, site): layers x heads x positions, token outer, layer inner
/// (the original's order).</summary>
public static class UnitPlanner
{
    public static List<PatchUnit> Plan(PatchSite site, int numLayers, int numHeads, int positions, int answerPosition,
        IReadOnlyList<int>? layers, IReadOnlyList<int>? heads, PositionSelection selection)
    {
        var ls = layers ?? Enumerable.Range(0, numLayers).ToList();
        foreach (var l in ls)
            if (l < 0 || l >= numLayers) throw new ArgumentOutOfRangeException(nameof(layers), $"layer {l} is out of range: the model has layers 0..{numLayers - 1}");
        var hs = site.PerHead ? heads ?? Enumerable.Range(0, numHeads).ToList() : [-1];
        foreach (var h in hs)
            if (site.PerHead && (h < 0 || h >= numHeads)) throw new ArgumentOutOfRangeException(nameof(heads), $"head {h} is out of range: layers have heads 0..{numHeads - 1}");
        IReadOnlyList<int> ps = selection.Kind switch
        {
            "all" => Enumerable.Range(0, positions).ToList(),
            "answer" => answerPosition >= 0 ? [answerPosition] : throw new ArgumentException("the answer word does not occur in the prompt, so --positions answer has no position"),
            _ => selection.List!,
        };
        foreach (var p in ps)
            if (p < 0 || p >= positions) throw new ArgumentOutOfRangeException(nameof(selection), $"position {p} is out of range: the prompt has positions 0..{positions - 1}");
        var units = new List<PatchUnit>();
        foreach (var p in ps)
            foreach (var l in ls)
                foreach (var h in hs)
                    units.Add(new PatchUnit(site, l, h, p));
        return units;
    }
}
