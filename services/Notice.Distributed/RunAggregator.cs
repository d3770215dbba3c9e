using System.Text.Json.Nodes;
using MessagePack;
using Notice.Core.Experiments;
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
    private readonly Dictionary<string, SampleMessage> _samples = new(StringComparer.Ordinal);
    private RedisValue _deadCursor = "0-0";
    private RunSpecMessage? _spec;
    private readonly DateTime _started = DateTime.UtcNow;
    private long _unitsAtStart = -1;
    private readonly object _lock = new();

    public string RunId => runId;
    public string OutDir => outDir;
    public bool Complete { get; private set; }

    /// <summary>Called with the results folder once the run is complete.</summary>
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
        await EnsureGroupAsync();
        foreach (var e in await _db.StreamRangeAsync(_keys.Results, "-", "+"))
            Apply(MessagePackSerializer.Deserialize<ShardResultMessage>((byte[])e["m"]!));
        await PollDeadAsync();
        var status = await _db.HashGetAsync(_keys.Status, "complete");
        if (status == "1") Complete = true;
    }

    private async Task EnsureGroupAsync()
    {
        try { await _db.StreamCreateConsumerGroupAsync(_keys.Results, RedisKeys.AggregatorGroup, "0-0", createStream: true); }
        catch (RedisServerException e) when (e.Message.Contains("BUSYGROUP")) { }
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
                if (Apply(MessagePackSerializer.Deserialize<ShardResultMessage>((byte[])e["m"]!))) applied++;
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
            var d = MessagePackSerializer.Deserialize<DeadLetterMessage>((byte[])e["m"]!);
            lock (_lock) if (_dead.TryAdd(d.ShardId, d)) n++;
            _deadCursor = e.Id;
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
            long failed = _dead.Values.Sum(d => (long)d.Units);
            long total = _spec?.TotalUnits ?? 0;
            if (_unitsAtStart < 0 && _spec is not null) _unitsAtStart = done;
            double seconds = (DateTime.UtcNow - _started).TotalSeconds;
            double rate = seconds > 0 ? (done - Math.Max(0, _unitsAtStart)) / seconds : 0;
            double? eta = rate > 0 && total > 0 ? Math.Max(0, total - done - failed) / rate : null;
            return new RunStatus(runId, total, done, failed, _spec?.TotalShards ?? 0, _results.Count, _dead.Count, rate, eta, Complete,
                Path.GetFullPath(outDir), Complete ? Path.GetFullPath(Path.Combine(outDir, "report.html")) : null);
        }
    }

    private async Task PublishStatusAsync()
    {
        _spec ??= await RunPlanner.LoadSpecAsync(_db, runId);
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
        lock (_lock) shards = _results.Count + _dead.Count;
        if (shards < _spec.TotalShards) return;
        await WriteResultsAsync();
        // The report is written before the run is marked complete, so whoever sees "complete" finds it.
        if (OnComplete is not null) await OnComplete(outDir);
        Complete = true;
        await _db.HashSetAsync(_keys.Status, [new("complete", "1"), new("report", Path.GetFullPath(Path.Combine(outDir, "report.html")))]);
        Log?.Invoke($"run {runId} complete: results in {Path.GetFullPath(outDir)}");
    }

    /// <summary>The rows and baselines received so far, in the order a local run writes them
    /// (sample, mode, site, then position, layer, head).</summary>
    public async Task<(List<ResultRow> Rows, List<BaselineRow> Baselines)> CurrentTablesAsync()
    {
        var spec = _spec ?? await RunPlanner.LoadSpecAsync(_db, runId) ?? throw new InvalidOperationException($"run {runId} has no spec in Redis");
        var rows = new List<ResultRow>();
        var baselines = new Dictionary<(string, string), BaselineRow>();
        List<ShardResultMessage> results;
        lock (_lock) results = _results.Values.OrderBy(r => r.ShardId, StringComparer.Ordinal).ToList();
        foreach (var r in results)
        {
            var (sampleId, mode, site, _) = ShardKey.Parse(r.ShardId);
            var sample = await SampleAsync(sampleId);
            rows.AddRange(r.Rows.Select(u => new ResultRow
            {
                Run = runId, Model = spec.ModelName, Task = sample.Task, Category = sample.Category, Sample = sampleId, Mode = mode, Site = site,
                Layer = u.Layer, Head = u.Head, Position = u.Position, Token = u.Token,
                ProbPatched = u.ProbPatched, ProbDiff = u.ProbDiff, LogitDiff = u.LogitDiff, PatchingEffect = u.PatchingEffect,
            }));
            if (r.Baseline is { } b && !baselines.ContainsKey((sampleId, mode)))
                baselines[(sampleId, mode)] = new BaselineRow
                {
                    Run = runId, Model = spec.ModelName, Task = sample.Task, Category = sample.Category, Sample = sampleId, Mode = mode,
                    CorrectToken = b.CorrectToken, IncorrectToken = b.IncorrectToken, CorrectId = b.CorrectId, IncorrectId = b.IncorrectId,
                    ProbClean = b.ProbClean, ProbCorrupt = b.ProbCorrupt, LogitGapClean = b.LogitGapClean, LogitGapCorrupt = b.LogitGapCorrupt, Positions = b.Positions,
                };
        }
        var order = spec.SampleIds.Select((id, i) => (id, i)).ToDictionary(x => x.id, x => x.i);
        rows = rows.OrderBy(r => order.GetValueOrDefault(r.Sample)).ThenBy(r => Array.IndexOf(spec.Modes, r.Mode)).ThenBy(r => Array.IndexOf(spec.Sites, r.Site))
            .ThenBy(r => r.Position).ThenBy(r => r.Layer).ThenBy(r => r.Head).ToList();
        var baselineRows = baselines.Values.OrderBy(b => order.GetValueOrDefault(b.Sample)).ThenBy(b => Array.IndexOf(spec.Modes, b.Mode)).ToList();
        return (rows, baselineRows);
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
        lock (_lock) dead = _dead.Values.OrderBy(d => d.ShardId, StringComparer.Ordinal).ToList();
        ResultsTables.Write(Path.Combine(outDir, ResultsTables.FailuresCsv),
            dead.Select(d => new FailureRow { Run = runId, Sample = d.SampleId, Mode = d.Mode, Site = d.Site, Error = $"{d.Units} units: {d.Error}" }));
        var provenance = new JsonObject
        {
            ["run"] = runId, ["notice_version"] = Provenance.NoticeVersion, ["model"] = spec.Model, ["pairs_sha256"] = spec.PairsSha256,
            ["modes"] = new JsonArray(spec.Modes.Select(m => (JsonNode)m).ToArray()), ["sites"] = new JsonArray(spec.Sites.Select(s => (JsonNode)s).ToArray()),
            ["positions"] = spec.Positions, ["compat"] = spec.Compat, ["noise_multiple"] = spec.NoiseMultiple, ["noise_seed"] = spec.NoiseSeed,
            ["batch_size"] = spec.BatchSize, ["dtype"] = "float32", ["units_total"] = spec.TotalUnits, ["shards_total"] = spec.TotalShards,
            ["shards_dead"] = dead.Count, ["distributed"] = true,
        };
        if (Directory.Exists(spec.Model))
        {
            var files = new JsonObject();
            foreach (var f in Directory.GetFiles(spec.Model).OrderBy(f => f, StringComparer.Ordinal)) files[Path.GetFileName(f)] = Provenance.Sha256(f);
            provenance["model_files_sha256"] = files;
        }
        File.WriteAllText(Path.Combine(outDir, Provenance.FileName), provenance.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private async Task<SampleMessage> SampleAsync(string id)
    {
        if (_samples.TryGetValue(id, out var s)) return s;
        var v = await _db.HashGetAsync(_keys.Samples, id);
        s = v.HasValue ? MessagePackSerializer.Deserialize<SampleMessage>((byte[])v!) : new SampleMessage { Id = id };
        s.Image = []; s.CorruptImage = [];   // only the names are needed here
        _samples[id] = s;
        return s;
    }
}
