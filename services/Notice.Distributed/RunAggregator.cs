using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;
using StackExchange.Redis;

namespace Notice.Distributed;

/// <summary>A run's progress as the aggregator sees it.</summary>
public sealed record RunStatus(string RunId, long UnitsTotal, long UnitsDone, long UnitsFailed, int ShardsTotal, int ShardsDone, int ShardsDead,
    double UnitsPerSecond, double? EtaSeconds, bool Complete, string? OutDir, string? Report);

/// <summary>
/// The aggregator's work for one run: keeps the run's tables current from its results stream (consumer
/// group "aggregator"), counts dead-lettered shards as failed units, and when every shard is done or
/// dead writes the results folder (design.md §6) and marks the run complete. All state is rebuilt from
/// Redis at start (the results and dead-letter streams), and shards are counted once by id, so a
/// restarted aggregator neither loses nor double counts anything.
/// </summary>
public sealed class RunAggregator(IConnectionMultiplexer redis, string runId, string outDir, string consumer = "aggregator-1")
{
    private readonly RedisKeys _keys = new(runId);
    private readonly IDatabase _db = redis.GetDatabase();
    private readonly Dictionary<string, ShardResultMessage> _results = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DeadLetterMessage> _dead = new(StringComparer.Ordinal);
    private RedisValue _deadCursor = "0-0";
    private RunSpecMessage? _spec;
    private readonly DateTime _started = DateTime.UtcNow;
    private long _unitsAtStart = -1;
    private readonly object _lock = new();

    public string RunId => runId;
    public string OutDir => outDir;
    public bool Complete { get; private set; }

    /// <summary>Called with the results folder once every shard is done or dead, before the run is marked
    /// complete (the aggregator writes the report here, so whoever sees "complete" finds it).</summary>
    public Func<string, Task>? OnComplete { get; init; }
    public Action<string>? Log { get; init; }

    public async Task RunAsync(CancellationToken cancel)
    {
        await RebuildAsync();
        var delay = TimeSpan.FromMilliseconds(25);
        while (!cancel.IsCancellationRequested && !Complete)
        {
            int applied = await PollAsync();
            await CheckCompleteAsync();
            if (applied > 0) { delay = TimeSpan.FromMilliseconds(25); continue; }
            await Task.Delay(delay, cancel).ContinueWith(_ => { });
            delay = TimeSpan.FromMilliseconds(Math.Min(500, delay.TotalMilliseconds * 2));
        }
    }

    /// <summary>Reads everything the run has produced so far.</summary>
    public async Task RebuildAsync()
    {
        await _db.EnsureGroupAsync(_keys.Results, RedisKeys.AggregatorGroup);
        foreach (var e in await _db.StreamRangeAsync(_keys.Results, "-", "+"))
            if (await DecodeAsync(e) is { } r) Apply(r);
        await PollDeadAsync();
        var status = await _db.HashGetAsync(_keys.Status, "complete");
        if (status == "1") Complete = true;
    }

    /// <summary>A results entry, or null for a malformed one (moved to the dead-letter stream with the reason, once).</summary>
    private async Task<ShardResultMessage?> DecodeAsync(StreamEntry e)
    {
        try
        {
            var r = Wire.Read<ShardResultMessage>(e);
            r.Failed ??= [];
            if (string.IsNullOrEmpty(r.ShardId) || r.Rows is null || r.Rows.Any(row => row is null) || r.Failed.Any(f => f is null || f.Units < 0))
                throw new InvalidDataException("a ShardResultMessage without its shard id or rows");
            foreach (var f in r.Failed) f.WithoutNulls().ShardId = r.ShardId;
            // Only a shard of the plan counts towards the run (a stray entry must not complete it early).
            if (!await _db.SetContainsAsync(_keys.Planned, r.ShardId)) throw new InvalidDataException($"shard '{r.ShardId}' is not planned in run {runId}");
            return r;
        }
        catch (InvalidDataException ex)
        {
            var id = $"malformed result {e.Id}";
            var message = new DeadLetterMessage { ShardId = id, Error = $"malformed results entry {e.Id}: {ex.Message}", Attempts = 1, Worker = consumer };
            if (await _db.AppendOnceAsync(_keys.Malformed, _keys.Dead, id, Wire.Write(message))) Log?.Invoke(message.Error);
            return null;
        }
    }

    /// <summary>New results through the consumer group (pending ones first, after a restart), then new dead letters.</summary>
    public async Task<int> PollAsync()
    {
        int applied = 0;
        foreach (var start in new RedisValue[] { "0-0", ">" })
        {
            var entries = await _db.StreamReadGroupAsync(_keys.Results, RedisKeys.AggregatorGroup, consumer, start, count: 200);
            foreach (var e in entries)
            {
                if (e.IsNull) continue;
                if (await DecodeAsync(e) is { } r && Apply(r)) applied++;
            }
            if (entries.Length > 0) await _db.StreamAcknowledgeAsync(_keys.Results, RedisKeys.AggregatorGroup, entries.Select(e => e.Id).ToArray());
        }
        applied += await PollDeadAsync();
        await PublishStatusAsync();
        return applied;
    }

    private async Task<int> PollDeadAsync()
    {
        int n = 0;
        var entries = await _db.StreamRangeAsync(_keys.Dead, _deadCursor == "0-0" ? "-" : "(" + _deadCursor, "+");
        foreach (var e in entries)
        {
            _deadCursor = e.Id;
            DeadLetterMessage d;
            try
            {
                d = Wire.Read<DeadLetterMessage>(e);
                if (string.IsNullOrEmpty(d.ShardId)) throw new InvalidDataException("a DeadLetterMessage without its shard id");
                d.WithoutNulls();
                if (d.ShardId.StartsWith("malformed ", StringComparison.Ordinal)) d.Units = 0;   // no units of the plan
                else if (d.Units < 0 || !await _db.SetContainsAsync(_keys.Planned, d.ShardId))
                    throw new InvalidDataException($"shard '{d.ShardId}' is not planned in run {runId}");
            }
            catch (InvalidDataException ex)
            {
                // Nothing to move it to: it is in the dead-letter stream already. Skipped, and said once.
                Log?.Invoke($"skipped a malformed dead-letter entry {e.Id}: {ex.Message}");
                continue;
            }
            // Malformed entries are reported as failures but are no shard of the plan.
            lock (_lock) if (_dead.TryAdd(d.ShardId, d) && !d.ShardId.StartsWith("malformed ", StringComparison.Ordinal)) n++;
        }
        return n;
    }

    private bool Apply(ShardResultMessage r)
    {
        lock (_lock) return _results.TryAdd(r.ShardId, r);
    }

    /// <summary>Shards received so far: lets readers cache what they derive from the tables.</summary>
    public int Version { get { lock (_lock) return _results.Count + _dead.Count; } }

    public RunStatus Status()
    {
        lock (_lock)
        {
            long done = _results.Values.Sum(r => (long)r.Rows.Length);
            long failed = Failures().Sum(d => (long)d.Units);
            long total = _spec?.TotalUnits ?? 0;
            if (_unitsAtStart < 0 && _spec is not null) _unitsAtStart = done;
            double seconds = (DateTime.UtcNow - _started).TotalSeconds;
            double rate = seconds > 0 ? (done - Math.Max(0, _unitsAtStart)) / seconds : 0;
            double? eta = rate > 0 && total > 0 ? Math.Max(0, total - done - failed) / rate : null;
            return new RunStatus(runId, total, done, failed, (int)(_spec?.Shards(_planned) ?? 0), _results.Count, DeadShards, rate, eta, Complete,
                Path.GetFullPath(outDir), Complete ? Path.GetFullPath(Path.Combine(outDir, "report.html")) : null);
        }
    }

    private async Task PublishStatusAsync()
    {
        _spec ??= await RunPlanner.LoadSpecAsync(_db, runId);
        _planned = (int)await _db.SetLengthAsync(_keys.Planned);
        var s = Status();
        await _db.HashSetAsync(_keys.Status,
        [
            new("units_total", s.UnitsTotal), new("units_done", s.UnitsDone), new("units_failed", s.UnitsFailed),
            new("shards_total", s.ShardsTotal), new("shards_done", s.ShardsDone), new("shards_dead", s.ShardsDead),
            new("units_per_second", s.UnitsPerSecond), new("out", s.OutDir ?? ""),
        ]);
    }

    private async Task CheckCompleteAsync()
    {
        if (Complete || _spec is null) return;
        int shards;
        lock (_lock) shards = _results.Count + DeadShards;
        // Every shard the coordinator planned, and every one the workers added (atp+exact's
        // confirmations, planned before the shard that adds them is written), is done or dead.
        _planned = (int)await _db.SetLengthAsync(_keys.Planned);
        if (shards < _spec.Shards(_planned)) return;
        // Entries still queued behind the last shard (garbage a worker has yet to dead-letter) are
        // waited for a few seconds, so that failures.csv reports them; never longer.
        _allShardsSince ??= DateTime.UtcNow;
        if (!await WorkDrainedAsync() && DateTime.UtcNow - _allShardsSince < DrainGrace) return;
        await PollDeadAsync();
        await WriteResultsAsync();
        // The report is written before the run is marked complete, so whoever sees "complete" finds it.
        if (OnComplete is not null) await OnComplete(outDir);
        Complete = true;
        await _db.HashSetAsync(_keys.Status, [new("complete", "1"), new("report", Path.GetFullPath(Path.Combine(outDir, "report.html")))]);
        Log?.Invoke($"run {runId} complete: results in {Path.GetFullPath(outDir)}");
    }

    /// <summary>How long a run whose shards are all done waits for the rest of its work stream to drain.</summary>
    public static readonly TimeSpan DrainGrace = TimeSpan.FromSeconds(5);
    private DateTime? _allShardsSince;

    /// <summary>Whether every work entry has been delivered to a worker and acknowledged.</summary>
    private async Task<bool> WorkDrainedAsync()
    {
        try
        {
            var groups = await _db.StreamGroupInfoAsync(_keys.Work);
            var group = groups.FirstOrDefault(g => g.Name == RedisKeys.WorkersGroup);
            if (group.Name is null || group.PendingMessageCount > 0) return false;
            var info = await _db.StreamInfoAsync(_keys.Work);
            return info.Length == 0 || string.CompareOrdinal(Normalize(group.LastDeliveredId), Normalize(info.LastGeneratedId)) >= 0;
        }
        catch (RedisServerException) { return true; }   // no work stream (a run planned elsewhere): nothing to wait for
    }

    /// <summary>A stream id "ms-seq" padded so ids compare as strings.</summary>
    private static string Normalize(string? id)
    {
        var parts = (id ?? "0-0").Split('-');
        return parts[0].PadLeft(20, '0') + "-" + (parts.Length > 1 ? parts[1] : "0").PadLeft(20, '0');
    }

    /// <summary>Shards planned so far (the coordinator's and those the workers added), as last read.</summary>
    private int _planned;

    /// <summary>What failed: dead shards and malformed entries, and the units of finished shards that could
    /// not run (an atp shard's site that cannot be planned for its sample). Called under the lock.</summary>
    private IEnumerable<DeadLetterMessage> Failures() => _dead.Values.Concat(_results.Values.SelectMany(r => r.Failed));

    /// <summary>Shards of the plan that are dead (malformed entries are reported, but were never planned).</summary>
    private int DeadShards => _dead.Keys.Count(k => !k.StartsWith("malformed ", StringComparison.Ordinal));

    /// <summary>The rows and baselines received so far, in the order a local run writes them
    /// (sample, mode, site, then position, layer, head).</summary>
    public async Task<(List<ResultRow> Rows, List<BaselineRow> Baselines)> CurrentTablesAsync()
    {
        var spec = _spec ?? await RunPlanner.LoadSpecAsync(_db, runId) ?? throw new InvalidOperationException($"run {runId} has no spec in Redis");
        List<ShardResultMessage> results;
        lock (_lock) results = _results.Values.ToList();
        var rows = ResultRows.Ordered(results.SelectMany(r => r.Rows), spec.SampleIds, spec.Experiment);
        var order = spec.SampleIds.Select((id, i) => (id, i)).GroupBy(x => x.id).ToDictionary(g => g.Key, g => g.First().i);
        var modes = spec.Experiment.Modes.Select(m => m.Name()).ToList();
        var baselines = results.Where(r => r.Baseline is not null).Select(r => r.Baseline!).GroupBy(b => (b.Sample, b.Mode)).Select(g => g.First())
            .OrderBy(b => order.GetValueOrDefault(b.Sample, int.MaxValue)).ThenBy(b => modes.IndexOf(b.Mode)).ToList();
        await Task.CompletedTask;
        return (rows, baselines);
    }

    /// <summary>The results folder, as `notice patch` writes it: results (CSV, Parquet), baselines, failures, provenance.</summary>
    public async Task WriteResultsAsync()
    {
        var spec = _spec ?? throw new InvalidOperationException($"run {runId} has no spec in Redis");
        Directory.CreateDirectory(outDir);
        var (rows, baselines) = await CurrentTablesAsync();
        ResultsTables.Write(Path.Combine(outDir, ResultsTables.ResultsCsv), rows);
        await ResultsTables.WriteParquetAsync(Path.Combine(outDir, ResultsTables.ResultsParquet), rows);
        ResultsTables.Write(Path.Combine(outDir, ResultsTables.BaselinesCsv), baselines);
        List<DeadLetterMessage> dead;
        lock (_lock) dead = Failures().OrderBy(d => d.ShardId, StringComparer.Ordinal).ThenBy(d => d.Site, StringComparer.Ordinal).ToList();
        ResultsTables.Write(Path.Combine(outDir, ResultsTables.FailuresCsv),
            dead.Select(d => new FailureRow { Run = runId, Sample = d.SampleId, Mode = d.Mode, Site = d.Site, Error = $"{d.Units} units: {d.Error}" }));
        var provenance = Provenance.Describe(spec.Experiment, runId, spec.PairsSha256);
        provenance["units_total"] = spec.TotalUnits;
        provenance["shards_total"] = spec.Shards(_planned);
        provenance["shards_dead"] = DeadShards;
        provenance["distributed"] = true;
        File.WriteAllText(Path.Combine(outDir, Provenance.FileName), provenance.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
