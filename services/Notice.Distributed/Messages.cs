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
    /// <summary>Shards the coordinator planned; atp+exact's confirmation shards join the planned set later (<see cref="RedisKeys.Planned"/>).</summary>
    [Key(5)] public int TotalShards { get; set; }

    /// <summary>Shards the run has once <paramref name="planned"/> are in the planned set: the run is
    /// complete when this many are done or dead (planning adds to the set one shard at a time).</summary>
    public long Shards(long planned) => Math.Max(TotalShards, planned);
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

/// <summary>
/// Work. An exact shard: the units of a sample, a mode and a site (head sites: one layer), so a worker
/// reuses its cached runs; the worker plans the units itself with the model's backend (as a local run
/// does), so positions are read from the prompt exactly as the model tokenises it. An attribution
/// (atp) shard: every unit of every site of a (sample, mode), estimated from one backward pass; under
/// atp+exact the worker that ran it adds a confirmation shard, an exact shard naming each of the
/// (sample, mode)'s tables' top units (<see cref="Units"/>).
/// </summary>
[MessagePackObject]
public sealed class ShardMessage
{
    [Key(0)] public string RunId { get; set; } = "";
    [Key(1)] public string ShardId { get; set; } = "";
    [Key(2)] public string SampleId { get; set; } = "";
    [Key(3)] public CorruptionMode Mode { get; set; }
    /// <summary>The site; null for an atp shard (every site of the experiment) and a confirmation shard (its units name theirs).</summary>
    [Key(4)] public PatchSite? Site { get; set; }
    /// <summary>W3C traceparent of the run's trace: every shard span is its child.</summary>
    [Key(5)] public string TraceParent { get; set; } = "";
    /// <summary>Head sites are sharded by layer: the layer, else -1 (every layer).</summary>
    [Key(6)] public int Layer { get; set; } = -1;
    /// <summary>Units (rows) the planner expects, reported as failed if the shard is dead-lettered; an
    /// atp shard of atp+exact counts its confirmation shards' rows too.</summary>
    [Key(7)] public int EstimatedUnits { get; set; }
    /// <summary>Exact (patched runs) or Atp (the estimates of a whole (sample, mode)).</summary>
    [Key(8)] public PatchMethod Method { get; set; } = PatchMethod.Exact;
    /// <summary>A confirmation shard's units, table by table in the order atp+exact chose them; null: plan the site's units.</summary>
    [Key(9)] public PatchUnit[]? Units { get; set; }

    /// <summary>The site's name, "*" for atp and confirmation shards (every site).</summary>
    [IgnoreMember] public string SiteName => Site?.Name ?? ShardKey.AllSites;
}

/// <summary>
/// A shard's id. Exact shards: "sample|mode|site", and "|L{layer}" for head sites, which are sharded by
/// layer; an atp shard: "sample|mode|*|atp"; an atp+exact confirmation shard: "sample|mode|*|confirm".
/// </summary>
public readonly record struct ShardKey(string Sample, string Mode, string Site, int? Layer = null, string? Stage = null)
{
    /// <summary>The site of an atp shard, which estimates every site.</summary>
    public const string AllSites = "*";
    public const string AtpStage = "atp";
    public const string ConfirmStage = "confirm";

    public static ShardKey Atp(string sample, string mode) => new(sample, mode, AllSites, null, AtpStage);
    public static ShardKey Confirm(string sample, string mode) => new(sample, mode, AllSites, null, ConfirmStage);

    public override string ToString() => $"{Sample}|{Mode}|{Site}" + (Layer is { } l ? $"|L{l}" : "") + (Stage is { } s ? $"|{s}" : "");

    /// <summary>Read from the right: mode, site and stage never hold '|', a sample id from a manifest may.</summary>
    public static ShardKey Parse(string shardId)
    {
        var parts = shardId.Split('|');
        string? stage = null;
        if (parts.Length >= 4 && parts[^1] is AtpStage or ConfirmStage)
        {
            stage = parts[^1];
            parts = parts[..^1];
        }
        int? layer = null;
        if (stage is null && parts.Length >= 4 && parts[^1].StartsWith('L') && int.TryParse(parts[^1].AsSpan(1), out var l))
        {
            layer = l;
            parts = parts[..^1];
        }
        if (parts.Length < 3 || parts[^1].Length == 0 || parts[^2].Length == 0)
            throw new FormatException($"shard id '{shardId}' is not sample|mode|site[|L<layer>], sample|mode|*|atp or sample|mode|*|confirm");
        return new ShardKey(string.Join('|', parts[..^2]), parts[^2], parts[^1], layer, stage);
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
    /// <summary>Units of this shard that could not run while the rest did (an atp shard's site whose
    /// units cannot be planned for this sample): reported as failures.</summary>
    [Key(5)] public DeadLetterMessage[] Failed { get; set; } = [];
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

    /// <summary>Empty strings for the text fields a decoded letter left nil (entries are untrusted).</summary>
    public DeadLetterMessage WithoutNulls()
    {
        ShardId ??= ""; SampleId ??= ""; Mode ??= ""; Site ??= ""; Error ??= ""; Worker ??= "";
        return this;
    }
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
