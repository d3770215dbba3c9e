using StackExchange.Redis;

namespace Notice.Distributed;

/// <summary>
/// Appends a message to a stream at most once per id: the id joins a set and the message the stream
/// in one Lua script, so both happen or neither. Planning a run twice enqueues no shard twice, and a
/// shard redelivered after its result was written adds no second result.
/// </summary>
public static class StreamOnce
{
    private const string Script = """
        if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
          redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])
          return 1
        end
        return 0
        """;

    /// <returns>whether the message was appended (false: <paramref name="id"/> was already in <paramref name="idSet"/>)</returns>
    public static async Task<bool> AppendOnceAsync(this IDatabase db, string idSet, string stream, string id, byte[] message) =>
        (long)await db.ScriptEvaluateAsync(Script, [idSet, stream], [id, message]) == 1;
}
