using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>What a metric reads: the patched runs' logits [N, V] and the clean and corrupt runs'
/// logits [V], all float32, and the correct and incorrect answer tokens.</summary>
public sealed record MetricTerms(Tensor Patched, Tensor Clean, Tensor Corrupt, long Correct, long Incorrect)
{
    /// <summary>L(tau) - L(tau_inc) of each patched row [N].</summary>
    public Tensor PatchedGap => Patched.select(1, Correct) - Patched.select(1, Incorrect);
    public Tensor CleanGap => Clean[Correct] - Clean[Incorrect];
    public Tensor CorruptGap => Corrupt[Correct] - Corrupt[Incorrect];
}

/// <summary>What a metric's attribution-patching estimate reads, per unit [N] (float32): the
/// first-order estimates of the change in the logit gap L(tau) - L(tau_inc) and in P(tau) when the
/// unit's clean value replaces its corrupt one, and the sample's baselines.</summary>
public sealed record EstimateTerms(Tensor GapChange, Tensor ProbChange, SampleBaseline Baseline);

/// <summary>One named metric of a patched run: its column in results, its field in messages and its
/// entry in reports follow from its place in <see cref="Metrics.All"/>.</summary>
/// <param name="Name">the column name (snake_case)</param>
/// <param name="Compute">one value per patched row [N], float32</param>
/// <param name="Unpatched">its value for the corrupt run itself (the original's low_score)</param>
/// <param name="Estimate">its first-order estimate (attribution patching), one value per unit [N]; null: NaN</param>
public sealed record Metric(string Name, string Description, Func<MetricTerms, Tensor> Compute, Func<SampleBaseline, float> Unpatched,
    Func<EstimateTerms, Tensor>? Estimate = null);

/// <summary>
/// The NOTICE metrics (design.md §3), in the original's order of operations. A new metric is one
/// more entry here.
/// </summary>
public static class Metrics
{
    public static readonly Metric ProbPatched = new("prob_patched", "P'(tau): the correct answer's probability in the patched run",
        t => t.Patched.softmax(-1).select(1, t.Correct), b => b.ProbCorrupt,
        e => e.ProbChange + e.Baseline.ProbCorrupt);

    public static readonly Metric ProbDiff = new("prob_diff", "restoration probability P'(tau) - P*(tau)",
        t => t.Patched.softmax(-1).select(1, t.Correct) - t.Corrupt.softmax(-1)[t.Correct], _ => 0,
        e => e.ProbChange);

    public static readonly Metric LogitDiff = new("logit_diff", "[L'(tau) - L'(tau_inc)] - [L*(tau) - L*(tau_inc)]",
        t => t.PatchedGap - t.CorruptGap, _ => 0,
        e => e.GapChange);

    public static readonly Metric PatchingEffect = new("patching_effect", "logit_diff / ([L(tau) - L(tau_inc)] - [L*(tau) - L*(tau_inc)])",
        t => (t.PatchedGap - t.CorruptGap) / (t.CleanGap - t.CorruptGap), _ => 0,
        e => e.GapChange / (e.Baseline.LogitGapClean - e.Baseline.LogitGapCorrupt));

    public static IReadOnlyList<Metric> All { get; } = [ProbPatched, ProbDiff, LogitDiff, PatchingEffect];

    public static int IndexOf(Metric metric) => ((IList<Metric>)All).IndexOf(metric);

    public static Metric ByName(string name) =>
        All.FirstOrDefault(m => m.Name == name) ?? throw new ArgumentException($"unknown metric '{name}'; expected one of {string.Join(", ", All.Select(m => m.Name))}");
}
