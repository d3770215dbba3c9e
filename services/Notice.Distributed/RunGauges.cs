using System.Diagnostics.Metrics;
using Notice.Core;
using StackExchange.Redis;

namespace Notice.Distributed;

/// <summary>
/// Gauges of a run's queue, sampled from Redis every few seconds (gauge callbacks must not block on
/// the network): shards waiting to be delivered, shards delivered but not acknowledged, and workers
/// whose heartbeat has not expired.
/// </summary>
public sealed class RunGauges
{
    private readonly RedisKeys _keys;
    private readonly IDatabase _db;
    private long _depth, _pending, _alive;

    public RunGauges(IConnectionMultiplexer redis, string runId)
    {
        _keys = new RedisKeys(runId);
        _db = redis.GetDatabase();
        var tags = new KeyValuePair<string, object?>("notice.run", runId);
        NoticeTelemetry.Meter.CreateObservableGauge("notice.queue.depth", () => new Measurement<long>(Volatile.Read(ref _depth), tags), "{shard}", "shards not yet delivered to a worker");
        NoticeTelemetry.Meter.CreateObservableGauge("notice.queue.pending", () => new Measurement<long>(Volatile.Read(ref _pending), tags), "{shard}", "shards delivered and not yet acknowledged");
        NoticeTelemetry.Meter.CreateObservableGauge("notice.workers.alive", () => new Measurement<long>(Volatile.Read(ref _alive), tags), "{worker}", "workers with a live heartbeat");
    }

    public (long Depth, long Pending, long Alive) Current => (Volatile.Read(ref _depth), Volatile.Read(ref _pending), Volatile.Read(ref _alive));

    public async Task SampleAsync()
    {
        try
        {
            var group = (await _db.StreamGroupInfoAsync(_keys.Work)).FirstOrDefault(g => g.Name == RedisKeys.WorkersGroup);
            Volatile.Write(ref _depth, group.Lag ?? 0);
            Volatile.Write(ref _pending, group.PendingMessageCount);
        }
        catch (RedisServerException) { }   // no stream yet: the coordinator has not planned the run
        long alive = 0;
        // Alive: the expiring key holds that worker's heartbeat (as the dashboard counts it; garbage is no worker).
        foreach (var worker in await _db.HashKeysAsync(_keys.Workers))
            if (WorkerHeartbeats.Decode(await _db.StringGetAsync(_keys.Worker(worker!)), worker!) is not null) alive++;
        Volatile.Write(ref _alive, alive);
    }

    public async Task RunAsync(TimeSpan every, CancellationToken cancel)
    {
        while (!cancel.IsCancellationRequested)
        {
            await SampleAsync();
            try { await Task.Delay(every, cancel); } catch (OperationCanceledException) { return; }
        }
    }
}
