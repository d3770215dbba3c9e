using Notice.Core.Experiments;
using Notice.Core.Patching;

namespace Notice.Core.Results;

/// <summary>
/// The one mapping from what an engine computes to table rows, used by local runs and by the
/// distributed run's workers alike (the aggregator only collects rows): a unit's result becomes a
/// <see cref="ResultRow"/>, a prepared sample's baseline a <see cref="BaselineRow"/>.
/// </summary>
public static class ResultRows
{
    /// <summary>The method's name as users type it and results carry it: `exact`, `atp`, `atp+exact`
    /// (whose rows carry `atp` or `exact`).</summary>
    public static string Name(this PatchMethod method) => PatchMethods.Name(method);

    public static ResultRow Row(string run, string model, EncodedSample sample, CorruptionMode mode, PatchMethod method, UnitResult r) => new()
    {
        Run = run, Model = model, Task = sample.Record.Task, Category = sample.Record.Category, Sample = sample.Record.Id,
        Mode = mode.Name(), Method = method.Name(), Site = r.Unit.Site.Name, Layer = r.Unit.Layer, Head = r.Unit.Head, Position = r.Unit.Position,
        Token = r.Unit.Position < sample.CleanTokens.Length ? sample.CleanTokens[r.Unit.Position] : "",
        Values = (float[])r.Metrics.Values.Clone(),
    };

    public static BaselineRow Baseline(string run, string model, EncodedSample sample, CorruptionMode mode, IPreparedSample prepared) => new()
    {
        Run = run, Model = model, Task = sample.Record.Task, Category = sample.Record.Category, Sample = sample.Record.Id, Mode = mode.Name(),
        CorrectToken = sample.CorrectToken, IncorrectToken = sample.IncorrectToken,
        CorrectId = prepared.Baseline.CorrectId, IncorrectId = prepared.Baseline.IncorrectId,
        ProbClean = prepared.Baseline.ProbClean, ProbCorrupt = prepared.Baseline.ProbCorrupt,
        LogitGapClean = prepared.Baseline.LogitGapClean, LogitGapCorrupt = prepared.Baseline.LogitGapCorrupt,
        Positions = prepared.Positions,
    };

    /// <summary>Results in the order a run lists them: by sample (manifest order), mode and site (the
    /// experiment's order), then position, layer and head.</summary>
    public static List<ResultRow> Ordered(IEnumerable<ResultRow> rows, IReadOnlyList<string> samples, ExperimentSpec spec)
    {
        var order = samples.Select((id, i) => (id, i)).GroupBy(x => x.id).ToDictionary(g => g.Key, g => g.First().i);
        var modes = spec.Modes.Select(m => m.Name()).ToList();
        var sites = spec.Sites.Select(s => s.Name).ToList();
        return rows.OrderBy(r => order.GetValueOrDefault(r.Sample, int.MaxValue)).ThenBy(r => modes.IndexOf(r.Mode)).ThenBy(r => sites.IndexOf(r.Site))
            .ThenBy(r => r.Method, StringComparer.Ordinal).ThenBy(r => r.Position).ThenBy(r => r.Layer).ThenBy(r => r.Head).ToList();
    }
}
