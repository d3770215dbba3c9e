using System.Globalization;
using Notice.Core.Patching;

namespace Notice.Core.Experiments;

/// <summary>
/// The patching methods over a family's engine (design.md §8): exact patching (one patched run per
/// unit), attribution patching (<see cref="IPatchingEngine.Estimate"/>: every unit's estimate from one
/// corrupt forward pass with gradients and one backward pass), and atp+exact (the estimates, then exact
/// patching of each table's top units by |estimated logit_diff|). Local runs (<see cref="Run"/>) and
/// workers' shards run the same <see cref="Estimate"/>, <see cref="Confirmed"/> and
/// <see cref="RunExact"/>, so their rows agree to the last bit.
/// </summary>
public static class PatchMethods
{
    public static PatchMethod Parse(string text) => text.Trim() switch
    {
        "exact" => PatchMethod.Exact,
        "atp" => PatchMethod.Atp,
        "atp+exact" => PatchMethod.AtpExact,
        var m => throw new ArgumentException($"--method: expected exact, atp or atp+exact, found '{m}'"),
    };

    /// <summary>The method as users type it: exact, atp, atp+exact.</summary>
    public static string Name(PatchMethod method) => method switch
    {
        PatchMethod.Exact => "exact",
        PatchMethod.Atp => "atp",
        PatchMethod.AtpExact => "atp+exact",
        _ => method.ToString().ToLowerInvariant(),
    };

    /// <summary>Whether the method needs attribution patching's estimates.</summary>
    public static bool Estimates(this PatchMethod method) => method is PatchMethod.Atp or PatchMethod.AtpExact;

    /// <summary>--confirm-top: a count K (a positive integer) or a fraction 0 &lt; f &lt; 1.</summary>
    public static double ParseConfirmTop(string text)
    {
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) && v > 0 && (v < 1 || v == Math.Floor(v)))
            return v;
        throw new ArgumentException($"--confirm-top: expected a count (a positive integer) or a fraction between 0 and 1, found '{text}'");
    }

    /// <summary>How many of a table's <paramref name="units"/> atp+exact confirms.</summary>
    public static int ConfirmCount(int units, double confirmTop) =>
        Math.Min(units, confirmTop >= 1 ? (int)confirmTop : (int)Math.Ceiling(confirmTop * units - 1e-9));

    /// <summary>The units atp+exact confirms in one table: the top by |estimated logit_diff| (ties, and
    /// NaN last, in the table's order), listed in the table's order, so that they batch as
    /// `--method exact` batches them (confirming every unit gives its rows to the last bit).</summary>
    public static List<PatchUnit> Confirmed(IReadOnlyList<UnitResult> estimates, double confirmTop) =>
        estimates.Select((r, i) => (r.Unit, Score: Math.Abs(r.Metrics.LogitDiff), i))
            .OrderByDescending(x => float.IsNaN(x.Score) ? float.NegativeInfinity : x.Score).ThenBy(x => x.i)
            .Take(ConfirmCount(estimates.Count, confirmTop)).OrderBy(x => x.i).Select(x => x.Unit).ToList();

    /// <summary>Attribution patching's estimates of several tables from one corrupt forward pass with
    /// gradients and one backward pass (<see cref="IPatchingEngine.Estimate"/>), sliced back per table.</summary>
    public static List<UnitResult[]> Estimate(IPatchingEngine engine, IPreparedSample prepared, IReadOnlyList<IReadOnlyList<PatchUnit>> tables)
    {
        var all = engine.Estimate(prepared, tables.SelectMany(t => t).ToList());
        var sliced = new List<UnitResult[]>(tables.Count);
        int offset = 0;
        foreach (var t in tables)
        {
            sliced.Add(all[offset..(offset + t.Count)]);
            offset += t.Count;
        }
        return sliced;
    }

    /// <summary>
    /// One table's rows by the experiment's method: (method, result) for each row, estimates first.
    /// <paramref name="estimates"/>: the table's estimates when the caller computed them with other
    /// tables' (<see cref="Estimate"/>: one backward pass per sample and mode); computed here otherwise.
    /// </summary>
    public static List<(PatchMethod Method, UnitResult Result)> Run(IPatchingEngine engine, IPreparedSample prepared, IReadOnlyList<PatchUnit> units,
        ExperimentSpec spec, IReadOnlyList<UnitResult>? estimates = null, Action<int>? progress = null)
    {
        var rows = new List<(PatchMethod, UnitResult)>();
        IReadOnlyList<PatchUnit> exact = units;
        if (spec.Method.Estimates())
        {
            estimates ??= engine.Estimate(prepared, units);
            rows.AddRange(estimates.Select(r => (PatchMethod.Atp, r)));
            progress?.Invoke(estimates.Count);
            if (spec.Method == PatchMethod.Atp) return rows;
            exact = Confirmed(estimates, spec.ConfirmTop);
        }
        rows.AddRange(RunExact(engine, prepared, exact, progress).Select(r => (PatchMethod.Exact, r)));
        return rows;
    }

    /// <summary>
    /// Exact patching of a table's units (all of them, or those atp+exact confirms). Units go to the
    /// engine as the distributed run's shards hold them (head sites one layer at a time; the engine
    /// batches them), and a confirmation shard runs its units through here too, so local and
    /// distributed rows agree to the last bit.
    /// </summary>
    public static List<UnitResult> RunExact(IPatchingEngine engine, IPreparedSample prepared, IReadOnlyList<PatchUnit> units, Action<int>? progress = null)
    {
        var rows = new List<UnitResult>(units.Count);
        foreach (var shard in units.GroupBy(u => (u.Site, u.Site.PerHead ? u.Layer : -1)).Select(g => g.ToList()))
        {
            rows.AddRange(engine.Run(prepared, shard));
            progress?.Invoke(shard.Count);
        }
        return rows;
    }
}
