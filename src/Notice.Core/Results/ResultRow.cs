using System.Text.Json.Serialization;

namespace Notice.Core.Results;

/// <summary>One patched unit: a row of the tidy results table (design.md §6). Head is -1 for whole modules.</summary>
public sealed class ResultRow
{
    [JsonPropertyName("run")] public string Run { get; set; } = "";
    [JsonPropertyName("model")] public string Model { get; set; } = "";
    [JsonPropertyName("task")] public string Task { get; set; } = "";
    [JsonPropertyName("category")] public string Category { get; set; } = "";
    [JsonPropertyName("sample")] public string Sample { get; set; } = "";
    [JsonPropertyName("mode")] public string Mode { get; set; } = "";
    [JsonPropertyName("site")] public string Site { get; set; } = "";
    [JsonPropertyName("layer")] public int Layer { get; set; }
    [JsonPropertyName("head")] public int Head { get; set; }
    [JsonPropertyName("position")] public int Position { get; set; }
    [JsonPropertyName("token")] public string Token { get; set; } = "";
    [JsonPropertyName("prob_patched")] public float ProbPatched { get; set; }
    [JsonPropertyName("prob_diff")] public float ProbDiff { get; set; }
    [JsonPropertyName("logit_diff")] public float LogitDiff { get; set; }
    [JsonPropertyName("patching_effect")] public float PatchingEffect { get; set; }

    /// <summary>What identifies a unit across runs, retries and workers.</summary>
    public (string, string, string, int, int, int) Key => (Sample, Mode, Site, Layer, Head, Position);
}

/// <summary>One sample's clean and corrupt answers in one mode: the per-sample baselines table.</summary>
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
