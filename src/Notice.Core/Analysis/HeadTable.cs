using Notice.Core.Results;

namespace Notice.Core.Analysis;

/// <summary>An attention head: its layer and its index within the layer, written L{layer}H{head}.</summary>
public readonly record struct HeadId(int Layer, int Head) : IComparable<HeadId>
{
    public int CompareTo(HeadId other) => (Layer, Head).CompareTo((other.Layer, other.Head));

    public override string ToString() => $"L{Layer}H{Head}";
}

/// <summary>One head's score in a table: the mean over samples of its per-sample logit_diff, and
/// how many samples that mean is over.</summary>
public sealed record HeadScore(HeadId Id, double Mean, int Samples);

/// <summary>
/// The layer x head table of one (model, task, mode, head site) and the heads that stand out in it,
/// as the paper defines them: a head is important where its mean logit_diff exceeds the table's
/// mean by more than two standard deviations.
/// <para>
/// Per sample, a head's value is its largest logit_diff over the positions patched. The paper
/// patches a head at one position per sample (the answer's), and then this is that value; when a
/// run patched every position, the maximum is the position where the head carries the answer, where
/// a mean would divide the same effect by the prompt length and let unrelated positions ([PAD],
/// punctuation) drown it. Every head of a table is patched at the same positions, so the choice
/// favours no head over another.
/// </para>
/// <para>
/// Mean and standard deviation are taken over the table's heads (one value per head), and the
/// standard deviation is the population one (divide by the number of heads; numpy's default,
/// ddof = 0): the heads of a table are all there are, not a sample of a larger set.
/// </para>
/// </summary>
public sealed class HeadTable
{
    /// <summary>How many standard deviations above the table mean make a head important.</summary>
    public const double Sigmas = 2.0;

    private HeadTable() { }

    public string Model { get; private init; } = "";
    public string Task { get; private init; } = "";
    public string Mode { get; private init; } = "";
    public string Site { get; private init; } = "";

    /// <summary>Distinct samples that contributed to the table.</summary>
    public int Samples { get; private init; }

    /// <summary>Every head with data, ordered by layer then head.</summary>
    public IReadOnlyList<HeadScore> Heads { get; private init; } = [];

    public double Mean { get; private init; }
    public double Std { get; private init; }
    public double Threshold => Mean + Sigmas * Std;

    /// <summary>Heads whose mean is strictly above the threshold (none when every head scores the same).</summary>
    public IReadOnlyList<HeadId> Important { get; private init; } = [];

    public int Layers => Heads.Max(h => h.Id.Layer) + 1;
    public int HeadsPerLayer => Heads.Max(h => h.Id.Head) + 1;

    public HeadScore? ScoreOf(HeadId id) => Heads.FirstOrDefault(h => h.Id == id);

    /// <summary>A table from head scores already averaged over samples (at least one); computes its
    /// mean, std and important heads.</summary>
    public static HeadTable FromScores(string model, string task, string mode, string site, int samples, IEnumerable<HeadScore> scores)
    {
        var heads = scores.OrderBy(s => s.Id).ToList();
        if (heads.Count == 0) throw new ArgumentException($"{model} {task} {mode} {site}: a head table needs at least one head");
        double mean = heads.Average(h => h.Mean);
        double std = Math.Sqrt(heads.Average(h => (h.Mean - mean) * (h.Mean - mean)));
        double threshold = mean + Sigmas * std;
        // When every head scores the same, rounding in the mean can leave them a hair above a threshold
        // that is the mean itself; no head stands out of a flat table.
        bool flat = heads.All(h => h.Mean == heads[0].Mean);
        return new HeadTable
        {
            Model = model, Task = task, Mode = mode, Site = site, Samples = samples, Heads = heads, Mean = mean, Std = std,
            Important = flat ? [] : heads.Where(h => h.Mean > threshold).Select(h => h.Id).ToList(),
        };
    }

    /// <summary>One table per (model, task, mode, site) of the head rows (head >= 0) in a results
    /// table; module rows are ignored.</summary>
    public static IReadOnlyList<HeadTable> FromResults(IEnumerable<ResultRow> rows) =>
        rows.Where(r => r.Head >= 0 && double.IsFinite(r.LogitDiff))
            .GroupBy(r => (r.Model, r.Task, r.Mode, r.Site))
            .Select(g =>
            {
                // Per sample and head: the largest logit_diff over the patched positions.
                var perSample = g.GroupBy(r => (r.Sample, Id: new HeadId(r.Layer, r.Head)))
                                 .Select(s => (s.Key.Id, Value: s.Max(r => (double)r.LogitDiff)));
                var scores = perSample.GroupBy(s => s.Id).Select(h => new HeadScore(h.Key, h.Average(s => s.Value), h.Count()));
                return FromScores(g.Key.Model, g.Key.Task, g.Key.Mode, g.Key.Site, g.Select(r => r.Sample).Distinct().Count(), scores);
            })
            .ByGroup(t => (t.Model, t.Task, t.Mode, t.Site))
            .ToList();
}
