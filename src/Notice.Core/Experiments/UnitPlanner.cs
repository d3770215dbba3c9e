using Notice.Core.Patching;

namespace Notice.Core.Experiments;

/// <summary>
/// A prompt's token positions as units are planned over them (input-id indices).
/// </summary>
/// <param name="Count">positions 0..Count-1 exist</param>
/// <param name="All">what `--positions all` patches, in order</param>
/// <param name="Answer">the answer word's position; -1 where there is none (see <see cref="AnswerProblem"/>)</param>
/// <param name="Last">the last position, where a causal model reads the answer</param>
public sealed record PromptPositions(int Count, IReadOnlyList<int> All, int Answer, int Last)
{
    /// <summary>A position that exists but is never patched (LLaVA's &lt;image&gt;), -1 for none.</summary>
    public int Excluded { get; init; } = -1;
    /// <summary>How many positions from <see cref="Excluded"/> on are never patched (Qwen2.5-VL's image tokens); 1 by default.</summary>
    public int ExcludedCount { get; init; } = 1;
    /// <summary>Why <see cref="Excluded"/> is not patched.</summary>
    public string ExcludedReason { get; init; } = "";
    /// <summary>Why `--positions answer` has no position when <see cref="Answer"/> is -1.</summary>
    public string AnswerProblem { get; init; } = "the answer word does not occur in the prompt, so --positions answer has no position";

    /// <summary>Every position patchable: BLIP's prompt, [CLS] and [SEP] included.</summary>
    public static PromptPositions Every(int count, int answer) => new(count, Enumerable.Range(0, count).ToList(), answer, count - 1);
}

/// <summary>The units of one (sample, mode, site): layers x heads x positions, token outer, layer inner
/// (the original's order).</summary>
public static class UnitPlanner
{
    public static List<PatchUnit> Plan(PatchSite site, int numLayers, int numHeads, PromptPositions prompt,
        IReadOnlyList<int>? layers, IReadOnlyList<int>? heads, PositionSelection selection)
    {
        var ls = layers ?? Enumerable.Range(0, numLayers).ToList();
        foreach (var l in ls)
            if (l < 0 || l >= numLayers) throw new ArgumentOutOfRangeException(nameof(layers), $"layer {l} is out of range: the model has layers 0..{numLayers - 1}");
        var hs = site.PerHead ? heads ?? Enumerable.Range(0, numHeads).ToList() : [-1];
        foreach (var h in hs)
            if (site.PerHead && (h < 0 || h >= numHeads)) throw new ArgumentOutOfRangeException(nameof(heads), $"head {h} is out of range: layers have heads 0..{numHeads - 1}");
        var ps = Positions(prompt, selection);
        var units = new List<PatchUnit>();
        foreach (var p in ps)
            foreach (var l in ls)
                foreach (var h in hs)
                    units.Add(new PatchUnit(site, l, h, p));
        return units;
    }

    /// <summary>The positions a selection names in a prompt; a position that does not exist or may not
    /// be patched is an error naming it.</summary>
    public static IReadOnlyList<int> Positions(PromptPositions prompt, PositionSelection selection)
    {
        IReadOnlyList<int> ps = selection.Kind switch
        {
            PositionKind.All or PositionKind.Default => prompt.All,
            PositionKind.Answer => prompt.Answer >= 0 ? [prompt.Answer] : throw new ArgumentException(prompt.AnswerProblem),
            PositionKind.Last => [prompt.Last],
            _ => selection.List!,
        };
        foreach (var p in ps)
        {
            if (p < 0 || p >= prompt.Count) throw new ArgumentOutOfRangeException(nameof(selection), $"position {p} is out of range: the prompt has positions 0..{prompt.Count - 1}");
            if (prompt.Excluded >= 0 && p >= prompt.Excluded && p < prompt.Excluded + prompt.ExcludedCount) throw new ArgumentOutOfRangeException(nameof(selection), $"position {p} {prompt.ExcludedReason}");
        }
        return ps;
    }
}
