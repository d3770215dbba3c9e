using Notice.Core.Results;

namespace Notice.Core.Analysis;

/// <summary>
/// How the model does on one (model, task, mode) before any patching, from the baselines table.
/// "Correct" means the correct answer's first token outscores the incorrect one's (logit gap > 0):
/// the two-way choice every metric is measured on, not exact-match generation.
/// </summary>
/// <param name="CleanAccuracy">share of samples correct on the clean input</param>
/// <param name="CorruptAccuracy">share of samples still correct on the corrupt input</param>
/// <param name="FlipRate">of the samples correct on the clean input, the share the corruption makes
/// incorrect: how well the corruption does its job (NaN when none is correct clean)</param>
public sealed record BaselineSummary(
    string Model, string Task, string Mode, int Samples,
    double CleanAccuracy, double CorruptAccuracy, double FlipRate,
    double MeanProbClean, double MeanProbCorrupt, double MeanLogitGapClean, double MeanLogitGapCorrupt)
{
    public static IReadOnlyList<BaselineSummary> FromBaselines(IEnumerable<BaselineRow> rows) =>
        rows.GroupBy(b => (b.Model, b.Task, b.Mode))
            .Select(g =>
            {
                var cleanCorrect = g.Where(b => b.LogitGapClean > 0).ToList();
                return new BaselineSummary(
                    g.Key.Model, g.Key.Task, g.Key.Mode, g.Count(),
                    CleanAccuracy: (double)cleanCorrect.Count / g.Count(),
                    CorruptAccuracy: g.Average(b => b.LogitGapCorrupt > 0 ? 1.0 : 0.0),
                    FlipRate: cleanCorrect.Count == 0 ? double.NaN : cleanCorrect.Average(b => b.LogitGapCorrupt > 0 ? 0.0 : 1.0),
                    MeanProbClean: g.Average(b => (double)b.ProbClean),
                    MeanProbCorrupt: g.Average(b => (double)b.ProbCorrupt),
                    MeanLogitGapClean: g.Average(b => (double)b.LogitGapClean),
                    MeanLogitGapCorrupt: g.Average(b => (double)b.LogitGapCorrupt));
            })
            .ByGroup(s => (s.Model, s.Task, s.Mode, ""))
            .ToList();
}
