using Notice.Core.Results;

namespace Notice.Core.Analysis;

/// <summary>
/// The token x layer picture of one whole-module site (mlp, attn, cross, mlp-out) in one (model,
/// task, mode): for each layer and token position, the mean over samples of logit_diff. logit_diff
/// rather than patching_effect because it is the paper's measure and the one universal heads use,
/// and because patching_effect divides by each sample's clean - corrupt gap, which is near zero
/// for samples the corruption barely moves, so a few such samples would dominate a mean.
/// </summary>
public sealed class ModuleMap
{
    public required string Model { get; init; }
    public required string Task { get; init; }
    public required string Mode { get; init; }
    public required string Site { get; init; }
    public required int Samples { get; init; }

    /// <summary>Layers with data, ascending: the rows of <see cref="Values"/>.</summary>
    public required IReadOnlyList<int> Layers { get; init; }

    /// <summary>Token positions with data, ascending: the columns of <see cref="Values"/>.</summary>
    public required IReadOnlyList<int> Positions { get; init; }

    /// <summary>The token at each of <see cref="Positions"/> when every sample has the same tokens
    /// at the same positions; null otherwise (prompts differ, so a column is only a position).</summary>
    public required IReadOnlyList<string>? Tokens { get; init; }

    /// <summary>[layer index, position index]: mean logit_diff, NaN where no sample has that unit.</summary>
    public required double[,] Values { get; init; }

    /// <summary>One map per (model, task, mode, site) of the module rows (head = -1) of a results table.</summary>
    public static IReadOnlyList<ModuleMap> FromResults(IEnumerable<ResultRow> rows) =>
        rows.Where(r => r.Head < 0 && double.IsFinite(r.LogitDiff))
            .GroupBy(r => (r.Model, r.Task, r.Mode, r.Site))
            .Select(g => Build(g.Key.Model, g.Key.Task, g.Key.Mode, g.Key.Site, g.ToList()))
            .ByGroup(m => (m.Model, m.Task, m.Mode, m.Site))
            .ToList();

    private static ModuleMap Build(string model, string task, string mode, string site, List<ResultRow> rows)
    {
        var layers = rows.Select(r => r.Layer).Distinct().Order().ToList();
        var positions = rows.Select(r => r.Position).Distinct().Order().ToList();
        var values = new double[layers.Count, positions.Count];
        var cells = rows.GroupBy(r => (r.Layer, r.Position)).ToDictionary(c => c.Key, c => c.Average(r => (double)r.LogitDiff));
        for (int l = 0; l < layers.Count; l++)
            for (int p = 0; p < positions.Count; p++)
                values[l, p] = cells.TryGetValue((layers[l], positions[p]), out var v) ? v : double.NaN;
        return new ModuleMap
        {
            Model = model, Task = task, Mode = mode, Site = site,
            Samples = rows.Select(r => r.Sample).Distinct().Count(),
            Layers = layers, Positions = positions, Tokens = SharedTokens(rows, positions), Values = values,
        };
    }

    private static IReadOnlyList<string>? SharedTokens(List<ResultRow> rows, List<int> positions)
    {
        var perSample = rows.GroupBy(r => r.Sample)
                            .Select(s => s.GroupBy(r => r.Position).ToDictionary(p => p.Key, p => p.First().Token))
                            .ToList();
        var first = perSample[0];
        bool shared = perSample.All(s => s.Count == positions.Count && positions.All(p => s.TryGetValue(p, out var t) && t == first[p]));
        return shared ? positions.Select(p => first[p]).ToList() : null;
    }
}
