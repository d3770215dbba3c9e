using MessagePack;

namespace Notice.Distributed;

/// <summary>An experiment as the coordinator stores it with the run (notice:{run}:spec).</summary>
[MessagePackObject]
public sealed class RunSpecMessage
{
    [Key(0)] public string RunId { get; set; } = "";
    [Key(1)] public string Model { get; set; } = "";
    [Key(2)] public string ModelName { get; set; } = "";
    [Key(3)] public string[] Modes { get; set; } = [];
    [Key(4)] public string[] Sites { get; set; } = [];
    [Key(5)] public int[]? Layers { get; set; }
    [Key(6)] public int[]? Heads { get; set; }
    [Key(7)] public string Positions { get; set; } = "all";
    [Key(8)] public string Compat { get; set; } = "default";
    [Key(9)] public int BatchSize { get; set; } = 64;
    [Key(10)] public double NoiseMultiple { get; set; } = 3.0;
    [Key(11)] public long NoiseSeed { get; set; }
    [Key(12)] public string TraceParent { get; set; } = "";
    [Key(13)] public long TotalUnits { get; set; }
    [Key(14)] public int TotalShards { get; set; }
    [Key(15)] public string[] SampleIds { get; set; } = [];
    [Key(16)] public string PairsSha256 { get; set; } = "";
}

/// <summary>A sample stored with the run, so a worker on another machine needs only the model files.</summary>
[MessagePackObject]
public sealed class SampleMessage
{
    [Key(0)] public string Id { get; set; } = "";
    [Key(1)] public string Task { get; set; } = "";
    [Key(2)] public string Category { get; set; } = "";
    [Key(3)] public string Prompt { get; set; } = "";
    [Key(4)] public string? CorruptPrompt { get; set; }
    [Key(5)] public string Answer { get; set; } = "";
    [Key(6)] public string WrongAnswer { get; set; } = "";
    [Key(7)] public string ImageName { get; set; } = "";
    [Key(8)] public byte[] Image { get; set; } = [];
    [Key(9)] public string CorruptImageName { get; set; } = "";
    [Key(10)] public byte[] CorruptImage { get; set; } = [];
}

/// <summary>One unit of a shard: (layer, head or -1, position).</summary>
[MessagePackObject]
public sealed class UnitMessage
{
    [Key(0)] public int Layer { get; set; }
    [Key(1)] public int Head { get; set; }
    [Key(2)] public int Position { get; set; }
}

/// <summary>Work: the units of a sample, a mode and a site (head sites: one layer), so a worker reuses its
/// cached runs. The worker plans the units itself with the model's backend (as a local run does), so
/// positions are read from the prompt exactly as the model tokenises it; <see cref="Units"/> is empty then.</summary>
[MessagePackObject]
public sealed class ShardMessage
{
    [Key(0)] public string RunId { get; set; } = "";
    [Key(1)] public string ShardId { get; set; } = "";
    [Key(2)] public string SampleId { get; set; } = "";
    [Key(3)] public string Mode { get; set; } = "";
    [Key(4)] public string Site { get; set; } = "";
    [Key(5)] public UnitMessage[] Units { get; set; } = [];
    /// <summary>W3C traceparent of the run's trace: every shard span is its child.</summary>
    [Key(6)] public string TraceParent { get; set; } = "";
    /// <summary>Head sites are sharded by layer: the layer, else -1 (every layer).</summary>
    [Key(7)] public int Layer { get; set; } = -1;
    /// <summary>Units the planner expects (reported as failed if the shard is dead-lettered).</summary>
    [Key(8)] public int EstimatedUnits { get; set; }
}

/// <summary>
/// A shard's id: "sample|mode|site", and "|L{layer}" for head sites, which are sharded by layer. The
/// planner writes it and the aggregator reads the sample, mode and site of a result back from it.
/// </summary>
public readonly record struct ShardKey(string Sample, string Mode, string Site, int? Layer = null)
{
    public override string ToString() => Layer is { } l ? $"{Sample}|{Mode}|{Site}|L{l}" : $"{Sample}|{Mode}|{Site}";

    /// <summary>Read from the right: mode and site never hold '|', a sample id from a manifest may.</summary>
    public static ShardKey Parse(string shardId)
    {
        var parts = shardId.Split('|');
        int? layer = null;
        if (parts.Length >= 4 && parts[^1].StartsWith('L') && int.TryParse(parts[^1].AsSpan(1), out var l))
        {
            layer = l;
            parts = parts[..^1];
        }
        if (parts.Length < 3 || parts[^1].Length == 0 || parts[^2].Length == 0)
            throw new FormatException($"shard id '{shardId}' is not sample|mode|site[|L<layer>]");
        return new ShardKey(string.Join('|', parts[..^2]), parts[^2], parts[^1], layer);
    }
}

/// <summary>A finished shard: its result rows (and the sample's baseline), written once with its completion mark.</summary>
[MessagePackObject]
public sealed class ShardResultMessage
{
    [Key(0)] public string ShardId { get; set; } = "";
    [Key(1)] public string Worker { get; set; } = "";
    [Key(2)] public ResultRowMessage[] Rows { get; set; } = [];
    [Key(3)] public BaselineMessage? Baseline { get; set; }
    [Key(4)] public double Seconds { get; set; }
}

[MessagePackObject]
public sealed class ResultRowMessage
{
    [Key(0)] public int Layer { get; set; }
    [Key(1)] public int Head { get; set; }
    [Key(2)] public int Position { get; set; }
    [Key(3)] public string Token { get; set; } = "";
    [Key(4)] public float ProbPatched { get; set; }
    [Key(5)] public float ProbDiff { get; set; }
    [Key(6)] public float LogitDiff { get; set; }
    [Key(7)] public float PatchingEffect { get; set; }
}

[MessagePackObject]
public sealed class BaselineMessage
{
    [Key(0)] public string CorrectToken { get; set; } = "";
    [Key(1)] public string IncorrectToken { get; set; } = "";
    [Key(2)] public long CorrectId { get; set; }
    [Key(3)] public long IncorrectId { get; set; }
    [Key(4)] public float ProbClean { get; set; }
    [Key(5)] public float ProbCorrupt { get; set; }
    [Key(6)] public float LogitGapClean { get; set; }
    [Key(7)] public float LogitGapCorrupt { get; set; }
    [Key(8)] public int Positions { get; set; }
}

/// <summary>A shard given up on after repeated failures: its units are reported as failed.</summary>
[MessagePackObject]
public sealed class DeadLetterMessage
{
    [Key(0)] public string ShardId { get; set; } = "";
    [Key(1)] public string SampleId { get; set; } = "";
    [Key(2)] public string Mode { get; set; } = "";
    [Key(3)] public string Site { get; set; } = "";
    [Key(4)] public int Units { get; set; }
    [Key(5)] public string Error { get; set; } = "";
    [Key(6)] public int Attempts { get; set; }
    [Key(7)] public string Worker { get; set; } = "";
}

/// <summary>A worker's expiring announcement.</summary>
[MessagePackObject]
public sealed class HeartbeatMessage
{
    [Key(0)] public string Worker { get; set; } = "";
    [Key(1)] public string Device { get; set; } = "";
    [Key(2)] public double UnitsPerSecond { get; set; }
    [Key(3)] public long UnitsDone { get; set; }
    [Key(4)] public DateTime LastSeenUtc { get; set; }
    [Key(5)] public string Host { get; set; } = "";
}
