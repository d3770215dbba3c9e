namespace Notice.Distributed;

/// <summary>
/// Every Redis key and stream of a run. The braces make all of a run's keys hash to one slot, so
/// the Lua scripts that touch several of them also work on a Redis cluster.
/// </summary>
public sealed class RedisKeys(string runId)
{
    public const string WorkersGroup = "workers";
    public const string AggregatorGroup = "aggregator";

    public string RunId { get; } = runId;
    private string P => $"notice:{{{RunId}}}";

    /// <summary>The experiment (RunSpecMessage).</summary>
    public string Spec => $"{P}:spec";
    /// <summary>HASH sample id -> SampleMessage.</summary>
    public string Samples => $"{P}:samples";
    /// <summary>STREAM of ShardMessage (field "m"); consumer group "workers".</summary>
    public string Work => $"{P}:work";
    /// <summary>SET of planned shard ids: planning twice enqueues nothing twice.</summary>
    public string Planned => $"{P}:planned";
    /// <summary>STREAM of ShardResultMessage; consumer group "aggregator".</summary>
    public string Results => $"{P}:results";
    /// <summary>SET of shard ids whose results are written: a redelivered shard adds nothing.</summary>
    public string Done => $"{P}:done";
    /// <summary>STREAM of DeadLetterMessage, and the SET of dead shard ids.</summary>
    public string Dead => $"{P}:dead";
    public string DeadSet => $"{P}:deadset";
    /// <summary>SET of the malformed work and results entries already dead-lettered ("malformed entry|result {id}"),
    /// apart from DeadSet, which holds planned shards only (workers count it to know the run is finished).</summary>
    public string Malformed => $"{P}:malformed";
    /// <summary>HASH shard id -> failed attempts.</summary>
    public string Failures => $"{P}:failures";
    /// <summary>HASH of the run's state as the aggregator sees it (units done, failed, total, complete, report).</summary>
    public string Status => $"{P}:status";
    /// <summary>HASH worker id -> its latest HeartbeatMessage (kept after the worker stops, for the dashboard).</summary>
    public string Workers => $"{P}:workers";
    /// <summary>Worker heartbeat keys (expiring), one per worker: a worker is alive while its key exists.</summary>
    public string Worker(string worker) => $"{P}:worker:{worker}";
    public string WorkerPattern => $"{P}:worker:*";
    /// <summary>SET of every run id.</summary>
    public const string Runs = "notice:runs";
}
