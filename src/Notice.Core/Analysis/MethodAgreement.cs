using Notice.Core.Results;

namespace Notice.Core.Analysis;

/// <summary>
/// How an estimating method (atp) agrees with exact patching on one (model, task, mode, head site)
/// head table, over the heads both scored: the Spearman rank correlation of their head scores, and
/// the recall of exact's important heads (mean + 2 sd, <see cref="HeadTable"/>) among the estimate's
/// top k heads, k the number of exact's important heads (so recall 1 means the estimate ranks exactly
/// those heads first).
/// </summary>
public sealed record MethodAgreement(string Model, string Task, string Mode, string Site, string Method,
    int Heads, double Spearman, int ExactImportant, int Recalled, double Recall)
{
    public const string FileName = "method_agreement.csv";
    public const string Exact = "exact";

    /// <summary>Results split by their method column (in the order exact, then the others by name).</summary>
    public static IReadOnlyList<(string Method, IReadOnlyList<ResultRow> Rows)> ByMethod(IReadOnlyList<ResultRow> rows) =>
        rows.GroupBy(r => r.Method)
            .OrderBy(g => g.Key == Exact ? 0 : 1).ThenBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (g.Key, (IReadOnlyList<ResultRow>)g.ToList())).ToList();

    /// <summary>The method whose tables the report's figures and universal_heads.md use: the one with the
    /// most rows (the complete tables of atp+exact are atp's), exact on a tie; the only one when there is one.</summary>
    public static string Primary(IReadOnlyList<(string Method, IReadOnlyList<ResultRow> Rows)> methods) =>
        methods.OrderByDescending(m => m.Rows.Count).ThenBy(m => m.Method == Exact ? 0 : 1).Select(m => m.Method).FirstOrDefault() ?? Exact;

    /// <summary>One row per head table that exact and <paramref name="method"/> both have.</summary>
    public static IReadOnlyList<MethodAgreement> Compare(IReadOnlyList<HeadTable> exact, IReadOnlyList<HeadTable> estimated, string method)
    {
        var result = new List<MethodAgreement>();
        foreach (var e in exact)
        {
            var a = estimated.FirstOrDefault(t => (t.Model, t.Task, t.Mode, t.Site) == (e.Model, e.Task, e.Mode, e.Site));
            if (a is null) continue;
            var common = e.Heads.Select(h => h.Id).Where(id => a.ScoreOf(id) is not null).ToList();
            if (common.Count == 0) continue;
            var exactScores = common.Select(id => e.ScoreOf(id)!.Mean).ToArray();
            var estimatedScores = common.Select(id => a.ScoreOf(id)!.Mean).ToArray();
            var important = e.Important.Where(common.Contains).ToList();
            var top = common.Zip(estimatedScores).OrderByDescending(x => x.Second).ThenBy(x => x.First).Take(important.Count).Select(x => x.First).ToHashSet();
            int recalled = important.Count(top.Contains);
            result.Add(new MethodAgreement(e.Model, e.Task, e.Mode, e.Site, method, common.Count, Rank(exactScores, estimatedScores),
                important.Count, recalled, important.Count == 0 ? double.NaN : (double)recalled / important.Count));
        }
        return result;
    }

    /// <summary>Spearman's rank correlation rho: Pearson's correlation of the ranks (ties get their average rank); NaN
    /// with fewer than two values or a constant side.</summary>
    public static double Rank(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count) throw new ArgumentException("Spearman: the two sides differ in length");
        if (x.Count < 2) return double.NaN;
        var rx = Ranks(x);
        var ry = Ranks(y);
        double mx = rx.Average(), my = ry.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < rx.Length; i++)
        {
            sxy += (rx[i] - mx) * (ry[i] - my);
            sxx += (rx[i] - mx) * (rx[i] - mx);
            syy += (ry[i] - my) * (ry[i] - my);
        }
        return sxx == 0 || syy == 0 ? double.NaN : sxy / Math.Sqrt(sxx * syy);
    }

    private static double[] Ranks(IReadOnlyList<double> v)
    {
        var order = Enumerable.Range(0, v.Count).OrderBy(i => v[i]).ToArray();
        var ranks = new double[v.Count];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && v[order[j + 1]] == v[order[i]]) j++;
            for (int k = i; k <= j; k++) ranks[order[k]] = (i + j) / 2.0 + 1;
            i = j + 1;
        }
        return ranks;
    }
}
