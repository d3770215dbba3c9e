using System.Text;

namespace Notice.Core.Tasks;

/// <summary>
/// What preparing a task did: how many pairs were written, how many source items were skipped
/// and why. Real datasets have broken rows and missing downloads; preparation skips them and
/// says so here instead of stopping, and the first few problems keep their file and line.
/// </summary>
public sealed class TaskReport
{
    /// <summary>How many problem lines <see cref="Problems"/> keeps; the counts cover all of them.</summary>
    public const int MaxProblems = 100;

    private readonly Dictionary<string, int> _skipped = new(StringComparer.Ordinal);
    private readonly List<string> _problems = [];

    public TaskReport(string task) => Task = task;

    /// <summary>Task name, as in the manifest's <c>task</c> field.</summary>
    public string Task { get; }

    /// <summary>The manifest written, absolute.</summary>
    public string? ManifestPath { get; internal set; }

    /// <summary>Pairs written to the manifest.</summary>
    public int Written { get; internal set; }

    /// <summary>Skipped source items by reason (see <see cref="SkipReason"/>).</summary>
    public IReadOnlyDictionary<string, int> Skipped => _skipped;

    /// <summary>Total of <see cref="Skipped"/>.</summary>
    public int SkippedTotal => _skipped.Values.Sum();

    /// <summary>The first <see cref="MaxProblems"/> skips, each naming its file (and line where there is one).</summary>
    public IReadOnlyList<string> Problems => _problems;

    /// <summary>Count of one skip reason (0 when none).</summary>
    public int SkippedFor(string reason) => _skipped.GetValueOrDefault(reason);

    internal void Skip(string reason, string? detail = null, int count = 1)
    {
        if (count <= 0) return; // e.g. an unknown folder with no images in it
        _skipped[reason] = _skipped.GetValueOrDefault(reason) + count;
        if (detail is not null && _problems.Count < MaxProblems) _problems.Add($"{reason}: {detail}");
    }

    public override string ToString()
    {
        var text = new StringBuilder($"{Task}: {Written} pairs written");
        if (ManifestPath is not null) text.Append($" to {ManifestPath}");
        if (_skipped.Count > 0)
        {
            text.Append($"; {SkippedTotal} skipped (");
            text.AppendJoin(", ", _skipped.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal)
                .Select(kv => $"{kv.Value} {kv.Key}"));
            text.Append(')');
        }
        return text.ToString();
    }
}

/// <summary>The reasons a preparer skips a source item, as keys of <see cref="TaskReport.Skipped"/>.</summary>
public static class SkipReason
{
    public const string MalformedRow = "malformed row";
    public const string MalformedTriplet = "malformed triplet";
    public const string AmbiguousNegation = "negation flags do not name exactly one differing element";
    public const string TripletMismatch = "triplets do not differ in exactly the flagged element";
    public const string ExcludedOption = "excluded option";
    public const string MissingImage = "missing image";
    public const string UnreadableImage = "unreadable image";
    public const string SameImage = "same image on both sides";
    public const string Duplicate = "duplicate";
    public const string MalformedPixels = "malformed pixels";
    public const string UnknownEmotion = "unknown emotion";
    public const string UnknownFolder = "unknown folder";
    public const string UnknownState = "state not in any category";
    public const string NoWrongAnswer = "no image of an allowed wrong answer";
    public const string NoStrOptions = "no same-length options for STR";
    public const string OtherUsage = "other usage";
}
