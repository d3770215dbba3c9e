using System.Text.Json.Serialization;
using MessagePack;
using Notice.Core.Patching;

namespace Notice.Core.Results;

/// <summary>One patched unit: a row of the tidy results table (design.md §6). Head is -1 for whole
/// modules. The metric columns follow <see cref="Metrics.All"/> (<see cref="Values"/>, in that order),
/// so a new metric needs no new member here.</summary>
[MessagePackObject]
public sealed class ResultRow
{
    [Key(0)] public string Run { get; set; } = "";
    [Key(1)] public string Model { get; set; } = "";
    [Key(2)] public string Task { get; set; } = "";
    [Key(3)] public string Category { get; set; } = "";
    [Key(4)] public string Sample { get; set; } = "";
    [Key(5)] public string Mode { get; set; } = "";
    /// <summary>How the row was computed: `exact` (a patched run), or an estimate's name.</summary>
    [Key(6)] public string Method { get; set; } = "exact";
    [Key(7)] public string Site { get; set; } = "";
    [Key(8)] public int Layer { get; set; }
    [Key(9)] public int Head { get; set; }
    [Key(10)] public int Position { get; set; }
    [Key(11)] public string Token { get; set; } = "";
    /// <summary>One value per metric of <see cref="Metrics.All"/>.</summary>
    [Key(12)] public float[] Values { get; set; } = new float[Metrics.All.Count];

    /// <summary>The identity columns, in table order; the metric columns follow them.</summary>
    public static IReadOnlyList<string> IdentityColumns { get; } =
        ["run", "model", "task", "category", "sample", "mode", "method", "site", "layer", "head", "position", "token"];

    public float this[Metric metric]
    {
        get => Values[Metrics.IndexOf(metric)];
        set => Values[Metrics.IndexOf(metric)] = value;
    }

    [IgnoreMember] public float ProbPatched { get => this[Metrics.ProbPatched]; set => this[Metrics.ProbPatched] = value; }
    [IgnoreMember] public float ProbDiff { get => this[Metrics.ProbDiff]; set => this[Metrics.ProbDiff] = value; }
    [IgnoreMember] public float LogitDiff { get => this[Metrics.LogitDiff]; set => this[Metrics.LogitDiff] = value; }
    [IgnoreMember] public float PatchingEffect { get => this[Metrics.PatchingEffect]; set => this[Metrics.PatchingEffect] = value; }

    /// <summary>What identifies a unit across runs, retries and workers.</summary>
    [IgnoreMember] public (string, string, string, string, int, int, int) Key => (Sample, Mode, Method, Site, Layer, Head, Position);
}

/// <summary>One sample's clean and corrupt answers in one mode: the per-sample baselines table.</summary>
[MessagePackObject(keyAsPropertyName: true)]
public sealed class BaselineRow
{
    [JsonPropertyName("run")] public string Run { get; set; } = "";
    [JsonPropertyName("model")] public string Model { get; set; } = "";
    [JsonPropertyName("task")] public string Task { get; set; } = "";
    [JsonPropertyName("category")] public string Category { get; set; } = "";
    [JsonPropertyName("sample")] public string Sample { get; set; } = "";
    [JsonPropertyName("mode")] public string Mode { get; set; } = "";
    [JsonPropertyName("correct_token")] public string CorrectToken { get; set; } = "";
    [JsonPropertyName("incorrect_token")] public string IncorrectToken { get; set; } = "";
    [JsonPropertyName("correct_id")] public long CorrectId { get; set; }
    [JsonPropertyName("incorrect_id")] public long IncorrectId { get; set; }
    [JsonPropertyName("prob_clean")] public float ProbClean { get; set; }
    [JsonPropertyName("prob_corrupt")] public float ProbCorrupt { get; set; }
    [JsonPropertyName("logit_gap_clean")] public float LogitGapClean { get; set; }
    [JsonPropertyName("logit_gap_corrupt")] public float LogitGapCorrupt { get; set; }
    [JsonPropertyName("positions")] public int Positions { get; set; }
}

/// <summary>A sample (or unit group) that could not be run, and why.</summary>
public sealed class FailureRow
{
    [JsonPropertyName("run")] public string Run { get; set; } = "";
    [JsonPropertyName("sample")] public string Sample { get; set; } = "";
    [JsonPropertyName("mode")] public string Mode { get; set; } = "";
    [JsonPropertyName("site")] public string Site { get; set; } = "";
    [JsonPropertyName("error")] public string Error { get; set; } = "";
}
