using StackExchange.Redis;

namespace Notice.Distributed;

/// <summary>A worker as the dashboard shows it, from its last heartbeat.</summary>
public sealed record WorkerView(string Worker, string Device, string Host, double UnitsPerSecond, long UnitsDone, DateTime LastSeenUtc, double SecondsAgo, bool Alive);

/// <summary>
/// The run's workers from their heartbeats (the notice:{run}:workers hash and each worker's expiring
/// key). Heartbeats come from a shared server: a malformed one (not a HeartbeatMessage, another
/// worker's name, numbers that are not finite) is skipped and counted, never an error.
/// </summary>
public static class WorkerHeartbeats
{
    public static async Task<(List<WorkerView> Workers, int Malformed)> ReadAsync(IDatabase db, RedisKeys keys)
    {
        var views = new List<WorkerView>();
        int malformed = 0;
        foreach (var entry in await db.HashGetAllAsync(keys.Workers))
        {
            string field = entry.Name.ToString();
            if (Decode(entry.Value, field) is not { } h) { malformed++; continue; }
            // Alive while its expiring key holds a heartbeat of the same worker.
            var key = await db.StringGetAsync(keys.Worker(field));
            bool alive = false;
            if (key.HasValue)
            {
                if (Decode(key, field) is null) malformed++;
                else alive = true;
            }
            views.Add(new WorkerView(h.Worker, h.Device, h.Host, h.UnitsPerSecond, h.UnitsDone, h.LastSeenUtc,
                Math.Max(0, (DateTime.UtcNow - h.LastSeenUtc).TotalSeconds), alive));
        }
        return (views.OrderBy(w => w.Worker, StringComparer.Ordinal).ToList(), malformed);
    }

    /// <summary>The heartbeat of <paramref name="worker"/>, or null when the value is anything else.</summary>
    public static HeartbeatMessage? Decode(RedisValue value, string worker)
    {
        HeartbeatMessage h;
        try { h = Wire.Read<HeartbeatMessage>((byte[]?)value); }
        catch (InvalidDataException) { return null; }
        bool ok = h.Worker == worker && h.Device is not null && h.Host is not null
            && double.IsFinite(h.UnitsPerSecond) && h.UnitsPerSecond >= 0 && h.UnitsDone >= 0;
        return ok ? h : null;
    }
}
