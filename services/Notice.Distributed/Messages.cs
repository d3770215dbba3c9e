using MessagePack;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;

namespace Notice.Distributed;

/// <summary>A run as the coordinator stores it (notice:{run}:spec): the experiment whole, as parsed
/// once by whoever started the run, and what planning found.</summary>
[MessagePackObject]
public sealed class RunSpecMessage
{
    [Key(0)] public string RunId { get; set; } = "";
    [Key(1)] public ExperimentSpec Experiment { get; set; } = null!;
    /// <summary>Where the aggregator writes the results folder.</summary>
    [Key(2)] public string OutDir { get; set; } = "";
    [Key(3)] public string TraceParent { get; set; } = "";
    [Key(4)] public long TotalUnits { get; set; }
    [Key(5)] public int TotalShards { get; set; }
    [Key(6)] public string[] SampleIds { get; set; } = [];
    [Key(7)] public string PairsSha256 { get; set; } = "";
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

/// <summary>Work: the units of a sample, a mode and a site (head sites: one layer), so a worker reuses its
/// cached runs. The worker plans the units itself with the model's backend (as a local run does), so
/// positions are read from the prompt exactly as the model tokenises it.</summary>
[MessagePackObject]
public sealed class ShardMessage
{
    [Key(0)] public string RunId { get; set; } = "";
    [Key(1)] public string ShardId { get; set; } = "";
    [Key(2)] public string SampleId { get; set; } = "";
    [Key(3)] public CorruptionMode Mode { get; set; }
    [Key(4)] public PatchSite Site { get; set; } = null!;
    /// <summary>W3C traceparent of the run's trace: every shard span is its child.</summary>
    [Key(5)] public string TraceParent { get; set; } = "";
    /// <summary>Head sites are sharded by layer: the layer, else -1 (every layer).</summary>
    [Key(6)] public int Layer { get; set; } = -1;
    /// <summary>Units the planner expects (reported as failed if the shard is dead-lettered).</summary>
    [Key(7)] public int EstimatedUnits { get; set; }
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

/// <summary>A finished shard: its result rows (and the sample's baseline), mapped by the worker with
/// <see cref="ResultRows"/> as a local run maps them, written once with its completion mark.</summary>
[MessagePackObject]
public sealed class ShardResultMessage
{
    [Key(0)] public string ShardId { get; set; } = "";
    [Key(1)] public string Worker { get; set; } = "";
    [Key(2)] public ResultRow[] Rows { get; set; } = [];
    [Key(3)] public BaselineRow? Baseline { get; set; }
    [Key(4)] public double Seconds { get; set; }
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
