using MessagePack;
using StackExchange.Redis;

namespace Notice.Distributed;

/// <summary>How every message is written and read: MessagePack, read with its untrusted-data
/// security settings (stream entries come from a shared server, never trusted blindly).</summary>
public static class Wire
{
    public static readonly MessagePackSerializerOptions Options =
        MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData);

    public static byte[] Write<T>(T value) => MessagePackSerializer.Serialize(value, Options);

    /// <summary>Decodes a message; a malformed one is an <see cref="InvalidDataException"/> saying what it should have been.</summary>
    public static T Read<T>(byte[]? bytes)
    {
        if (bytes is null || bytes.Length == 0) throw new InvalidDataException($"empty {typeof(T).Name}");
        try { return MessagePackSerializer.Deserialize<T>(bytes, Options) ?? throw new InvalidDataException($"null {typeof(T).Name}"); }
        catch (MessagePackSerializationException e) { throw new InvalidDataException($"not a {typeof(T).Name}: {e.InnerException?.Message ?? e.Message}", e); }
    }

    /// <summary>A stream entry's message (field "m").</summary>
    public static T Read<T>(StreamEntry entry) => Read<T>((byte[]?)entry["m"]);
}

/// <summary>
/// The run's streams: consumer groups made once, and messages appended at most once per id: the id
/// joins a set and the message the stream in one Lua script, so both happen or neither. Planning a
/// run twice enqueues no shard twice, a shard redelivered after its result was written adds no second
/// result, and a shard dead-lettered twice is reported once (its work entry acknowledged in the same script).
/// </summary>
public static class StreamOnce
{
    private const string Script = """
        local added = 0
        if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
          redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])
          added = 1
        end
        if ARGV[3] ~= '' then
          redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
        end
        return added
        """;

    /// <returns>whether the message was appended (false: <paramref name="id"/> was already in <paramref name="idSet"/>)</returns>
    public static async Task<bool> AppendOnceAsync(this IDatabase db, string idSet, string stream, string id, byte[] message) =>
        (long)await db.ScriptEvaluateAsync(Script, [idSet, stream, stream], [id, message, "", ""]) == 1;

    /// <summary>Appends once and, in the same script, acknowledges <paramref name="entryId"/> of <paramref name="ackStream"/>'s group.</summary>
    public static async Task<bool> AppendOnceAndAckAsync(this IDatabase db, string idSet, string stream, string id, byte[] message,
        string ackStream, string group, RedisValue entryId) =>
        (long)await db.ScriptEvaluateAsync(Script, [idSet, stream, ackStream], [id, message, group, entryId]) == 1;

    /// <summary>Creates a consumer group reading the stream from its start (the stream too), once.</summary>
    public static async Task EnsureGroupAsync(this IDatabase db, string stream, string group)
    {
        try { await db.StreamCreateConsumerGroupAsync(stream, group, "0-0", createStream: true); }
        catch (RedisServerException e) when (e.Message.Contains("BUSYGROUP")) { }
    }
}

/// <summary>The run's samples as stored with it, read once per process and kept (workers need the
/// image bytes, the aggregator only the names).</summary>
public sealed class RunSamples(IDatabase db, RedisKeys keys, bool keepImages = true)
{
    private readonly Dictionary<string, SampleMessage> _samples = new();

    public async Task<SampleMessage> GetAsync(string id)
    {
        lock (_samples) if (_samples.TryGetValue(id, out var known)) return known;
        var v = await db.HashGetAsync(keys.Samples, id);
        if (!v.HasValue) throw new ArgumentException($"sample {id} is not stored with run {keys.RunId}");
        var s = Wire.Read<SampleMessage>((byte[])v!);
        if (!keepImages) { s.Image = []; s.CorruptImage = []; }
        lock (_samples)
        {
            if (keepImages && _samples.Count > 256) _samples.Clear();
            _samples[id] = s;
        }
        return s;
    }
}
