using System.Diagnostics;
using System.Diagnostics.Metrics;
using Notice.Core;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Vlm;
using StackExchange.Redis;

namespace Notice.Distributed;

public sealed record WorkerOptions
{
    public required string RunId { get; init; }
    public required string WorkerId { get; init; }
    public string Device { get; init; } = "cpu";
    /// <summary>Where this machine keeps the model; null: the path the run was planned with.</summary>
    public string? ModelPath { get; init; }
    /// <summary>A pending shard idle this long belongs to a dead or hung worker and is claimed.</summary>
    public TimeSpan ClaimIdle { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How often a worker renews its claim on the shard it is running (well under ClaimIdle).</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>Failed attempts (errors, or deliveries to workers that died) before a shard is dead-lettered.</summary>
    public int MaxAttempts { get; init; } = 3;
    /// <summary>Stop when the run is complete (else keep polling until cancelled).</summary>
    public bool ExitWhenRunComplete { get; init; } = true;
    /// <summary>Tests only: called after a shard's results are written and before it is acknowledged;
    /// returning true makes the worker stop there, as if it died.</summary>
    public Func<string, bool>? DieAfterWrite { get; init; }
}

/// <summary>
/// A worker: pulls shards from the run's work stream through the "workers" consumer group, runs them,
/// writes each shard's results together with its completion mark (one Lua script), then XACKs.
///
/// StackExchange.Redis multiplexes one connection and offers no blocking XREADGROUP (BLOCK would stall
/// every other command on it), so the worker polls with an exponential backoff (25 ms to 1 s): idle
/// workers cost a few commands a second, busy ones poll right after each shard.
/// </summary>
public sealed class WorkerLoop(IConnectionMultiplexer redis, WorkerOptions options)
{

    private static readonly Counter<long> UnitsCompleted = NoticeTelemetry.Meter.CreateCounter<long>("notice.units.completed", "{unit}", "patched units completed");
    private static readonly Histogram<double> ShardDuration = NoticeTelemetry.Meter.CreateHistogram<double>("notice.shard.duration", "s", "time to run one shard");

    private readonly RedisKeys _keys = new(options.RunId);
    private readonly IDatabase _db = redis.GetDatabase();
    private readonly RunSamples _samples = new(redis.GetDatabase(), new RedisKeys(options.RunId));
    private long _unitsDone;
    private readonly Stopwatch _busy = new();

    public Action<string>? Log { get; init; }

    public async Task RunAsync(CancellationToken cancel)
    {
        // A device this machine or build cannot use fails now, in one line, not after the run is planned.
        TorchDevices.Require(options.Device);
        var spec = await WaitForSpecAsync(cancel);
        using var runner = new ShardRunner(spec, options.ModelPath, options.Device);
        var delay = TimeSpan.FromMilliseconds(25);
        var lastClaim = Stopwatch.StartNew();
        var lastBeat = Stopwatch.StartNew();
        await HeartbeatAsync();
        while (!cancel.IsCancellationRequested)
        {
            if (lastBeat.Elapsed >= options.Heartbeat) { await HeartbeatAsync(); lastBeat.Restart(); }
            var entry = await NextAsync(lastClaim);
            if (entry is null)
            {
                if (options.ExitWhenRunComplete && await RunFinishedAsync(spec))
                {
                    await AcknowledgeStaleAsync(runner, cancel);
                    break;
                }
                await Task.Delay(delay, cancel).ContinueWith(_ => { });
                delay = TimeSpan.FromMilliseconds(Math.Min(1000, delay.TotalMilliseconds * 2));
                continue;
            }
            delay = TimeSpan.FromMilliseconds(25);
            if (!await ProcessAsync(runner, entry.Value, cancel)) return;   // died on purpose (tests)
        }
        await HeartbeatAsync();
        await _db.KeyDeleteAsync(_keys.Worker(options.WorkerId));
    }

    private async Task<RunSpecMessage> WaitForSpecAsync(CancellationToken cancel)
    {
        while (true)
        {
            var spec = await RunPlanner.LoadSpecAsync(_db, options.RunId);
            if (spec is not null) return spec;
            await Task.Delay(200, cancel);
        }
    }

    private async Task<bool> RunFinishedAsync(RunSpecMessage spec)
    {
        long done = await _db.SetLengthAsync(_keys.Done), dead = await _db.SetLengthAsync(_keys.DeadSet), planned = await _db.SetLengthAsync(_keys.Planned);
        return done + dead >= spec.Shards(planned);
    }

    /// <summary>Once every shard is done or dead, entries still pending belong to workers that died
    /// after writing: acknowledge them so the group's pending list ends empty.</summary>
    private async Task AcknowledgeStaleAsync(ShardRunner runner, CancellationToken cancel)
    {
        while (!cancel.IsCancellationRequested)
        {
            var claimed = await _db.StreamAutoClaimAsync(_keys.Work, RedisKeys.WorkersGroup, options.WorkerId, 0, "0-0", 100);
            if (claimed.ClaimedEntries.Length == 0) return;
            foreach (var e in claimed.ClaimedEntries) await ProcessAsync(runner, e, cancel);
        }
    }

    /// <summary>A new shard, else one idle past ClaimIdle in another consumer's pending list.</summary>
    private async Task<StreamEntry?> NextAsync(Stopwatch lastClaim)
    {
        var fresh = await _db.StreamReadGroupAsync(_keys.Work, RedisKeys.WorkersGroup, options.WorkerId, ">", count: 1);
        if (fresh.Length > 0) return fresh[0];
        if (lastClaim.Elapsed < TimeSpan.FromSeconds(Math.Min(5, options.ClaimIdle.TotalSeconds / 2))) return null;
        lastClaim.Restart();
        var claimed = await _db.StreamAutoClaimAsync(_keys.Work, RedisKeys.WorkersGroup, options.WorkerId, (long)options.ClaimIdle.TotalMilliseconds, "0-0", 1);
        if (claimed.ClaimedEntries.Length == 0) return null;
        var e = claimed.ClaimedEntries[0];
        Log?.Invoke($"claimed shard entry {e.Id} from a worker that went quiet");
        return e;
    }

    private async Task<bool> ProcessAsync(ShardRunner runner, StreamEntry entry, CancellationToken cancel)
    {
        ShardMessage shard;
        try { shard = await ReadShardAsync(entry); }
        catch (InvalidDataException e)
        {
            // A malformed entry fails the same way for every worker: report it, never retry it.
            await DeadLetterAsync(entry.Id, new ShardMessage { ShardId = $"malformed entry {entry.Id}", Site = new PatchSite("?", "", false) },
                $"malformed work entry {entry.Id}: {e.Message}", 1, _keys.Malformed);
            return true;
        }
        if (await _db.SetContainsAsync(_keys.Done, shard.ShardId) || await _db.SetContainsAsync(_keys.DeadSet, shard.ShardId))
        {
            // Written already (the last holder died before its XACK): nothing to add.
            await _db.StreamAcknowledgeAsync(_keys.Work, RedisKeys.WorkersGroup, entry.Id);
            return true;
        }
        using var span = StartShardSpan(shard);
        int deliveries = await DeliveriesAsync(entry.Id);
        if (deliveries > options.MaxAttempts)
        {
            await DeadLetterAsync(entry.Id, shard, $"delivered {deliveries} times without finishing (workers died or hung)", deliveries);
            return true;
        }
        using var keepAlive = new CancellationTokenSource();
        var keepAliveTask = KeepAliveAsync(entry.Id, keepAlive.Token);
        try
        {
            while (true)
            {
                try
                {
                    var sample = await _samples.GetAsync(shard.SampleId);
                    _busy.Start();
                    var (result, next) = runner.Run(shard, sample, options.WorkerId);
                    _busy.Stop();
                    // Shards this one adds (atp+exact's confirmations) are planned before its results are
                    // written: whoever sees it done finds them planned, and a redelivery adds none twice.
                    foreach (var n in next) await _db.AppendOnceAsync(_keys.Planned, _keys.Work, n.ShardId, Wire.Write(n));
                    await _db.AppendOnceAsync(_keys.Done, _keys.Results, shard.ShardId, Wire.Write(result));
                    _unitsDone += result.Rows.Length;
                    UnitsCompleted.Add(result.Rows.Length);
                    ShardDuration.Record(result.Seconds);
                    span?.SetTag("notice.units", result.Rows.Length);
                    if (options.DieAfterWrite?.Invoke(shard.ShardId) == true) return false;
                    await _db.StreamAcknowledgeAsync(_keys.Work, RedisKeys.WorkersGroup, entry.Id);
                    return true;
                }
                catch (Exception e) when (!cancel.IsCancellationRequested)
                {
                    _busy.Stop();
                    long failures = await _db.HashIncrementAsync(_keys.Failures, shard.ShardId);
                    span?.SetStatus(ActivityStatusCode.Error, e.Message);
                    Log?.Invoke($"shard {shard.ShardId} failed (attempt {failures}): {e.Message}");
                    // Bad input fails the same way every time: no point in trying again.
                    if (InputErrors.IsInputError(e) || failures >= options.MaxAttempts)
                    {
                        await DeadLetterAsync(entry.Id, shard, e.Message, (int)failures);
                        return true;
                    }
                }
            }
        }
        finally
        {
            keepAlive.Cancel();
            await keepAliveTask.ContinueWith(_ => { });
        }
    }

    /// <summary>A work entry's shard: decoded, and one of this run's planned shards (else <see cref="InvalidDataException"/>).</summary>
    private async Task<ShardMessage> ReadShardAsync(StreamEntry entry)
    {
        var shard = Wire.Read<ShardMessage>(entry);
        if (string.IsNullOrEmpty(shard.ShardId) || string.IsNullOrEmpty(shard.SampleId) || !Enum.IsDefined(shard.Mode) || shard.EstimatedUnits < 0
            || shard.Method is not (PatchMethod.Exact or PatchMethod.Atp)
            || !(shard.Method == PatchMethod.Atp ? shard.Site is null && shard.Units is null : (shard.Site is { Name.Length: > 0 }) != (shard.Units is not null))
            || shard.Units is not null && (shard.Units.Length > shard.EstimatedUnits || shard.Units.Any(u => u?.Site is null)))
            throw new InvalidDataException("a ShardMessage without its shard id, sample, mode, method, site or units (an exact shard names its site or its units; an atp shard neither)");
        if (shard.RunId != options.RunId) throw new InvalidDataException($"a shard of run '{shard.RunId}', not of run {options.RunId}");
        if (!await _db.SetContainsAsync(_keys.Planned, shard.ShardId)) throw new InvalidDataException($"shard '{shard.ShardId}' is not planned in run {options.RunId}");
        return shard;
    }

    private static Activity? StartShardSpan(ShardMessage shard)
    {
        ActivityContext.TryParse(shard.TraceParent, null, out var parent);
        var span = NoticeTelemetry.Source.StartActivity("shard", ActivityKind.Consumer, parent);
        span?.SetTag("notice.run", shard.RunId);
        span?.SetTag("notice.shard", shard.ShardId);
        span?.SetTag("notice.sample", shard.SampleId);
        span?.SetTag("notice.mode", shard.Mode);
        span?.SetTag("notice.site", shard.SiteName);
        span?.SetTag("notice.method", PatchMethods.Name(shard.Method));
        return span;
    }

    /// <summary>Renews this worker's claim so a long shard is not taken for a dead one (XCLAIM JUSTID resets its idle time).</summary>
    private async Task KeepAliveAsync(RedisValue id, CancellationToken cancel)
    {
        while (!cancel.IsCancellationRequested)
        {
            try { await Task.Delay(options.KeepAlive, cancel); }
            catch (OperationCanceledException) { return; }
            await _db.StreamClaimIdsOnlyAsync(_keys.Work, RedisKeys.WorkersGroup, options.WorkerId, 0, [id]);
        }
    }

    private async Task<int> DeliveriesAsync(RedisValue id)
    {
        var pending = await _db.StreamPendingMessagesAsync(_keys.Work, RedisKeys.WorkersGroup, 1, RedisValue.Null, id, id);
        return pending.Length > 0 ? pending[0].DeliveryCount : 1;
    }

    /// <param name="idSet">the set that keeps the letter once: DeadSet for planned shards, Malformed for malformed entries</param>
    private async Task DeadLetterAsync(RedisValue entryId, ShardMessage shard, string error, int attempts, string? idSet = null)
    {
        var message = new DeadLetterMessage
        {
            ShardId = shard.ShardId, SampleId = shard.SampleId, Mode = shard.Mode.Name(), Site = shard.SiteName,
            Units = shard.EstimatedUnits, Error = error, Attempts = attempts, Worker = options.WorkerId,
        };
        Log?.Invoke($"shard {shard.ShardId} dead-lettered: {error}");
        await _db.AppendOnceAndAckAsync(idSet ?? _keys.DeadSet, _keys.Dead, shard.ShardId, Wire.Write(message), _keys.Work, RedisKeys.WorkersGroup, entryId);
    }

    private async Task HeartbeatAsync()
    {
        var beat = new HeartbeatMessage
        {
            Worker = options.WorkerId, Device = options.Device, UnitsDone = _unitsDone,
            UnitsPerSecond = _busy.Elapsed.TotalSeconds > 0 ? _unitsDone / _busy.Elapsed.TotalSeconds : 0,
            LastSeenUtc = DateTime.UtcNow, Host = Environment.MachineName,
        };
        var bytes = Wire.Write(beat);
        // The expiring key says the worker is alive; the hash keeps its last word for the dashboard.
        await _db.StringSetAsync(_keys.Worker(options.WorkerId), bytes, TimeSpan.FromSeconds(Math.Max(5, options.Heartbeat.TotalSeconds * 5)));
        await _db.HashSetAsync(_keys.Workers, options.WorkerId, bytes);
    }
}
