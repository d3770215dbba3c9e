using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>
/// Keys and values of one LLaMA attention layer for the positions computed so far,
/// [B, key/value heads, S, Dh]; keys after the rotary embedding, before grouped-query repetition
/// (the layout of transformers' cache). Positions before a patched one never change in a causal
/// model, so a patched run can reuse the corrupt run's cache <see cref="Narrow"/>ed to them.
/// </summary>
public sealed record KeyValueCache(Tensor Keys, Tensor Values) : IDisposable
{
    /// <summary>Number of cached positions.</summary>
    public long Length => Keys.shape[2];

    /// <summary>The first <paramref name="length"/> positions (a view).</summary>
    public KeyValueCache Narrow(long length) => new(Keys.narrow(2, 0, length), Values.narrow(2, 0, length));

    /// <summary>This cache followed by the keys/values of new positions. A one-row cache serves a
    /// batch of any size (for example one corrupt run under many patched rows).</summary>
    public KeyValueCache Append(Tensor keys, Tensor values)
    {
        long b = keys.shape[0];
        var pastKeys = Keys.shape[0] == b ? Keys : Keys.expand(b, -1, -1, -1);
        var pastValues = Values.shape[0] == b ? Values : Values.expand(b, -1, -1, -1);
        return new KeyValueCache(torch.cat(new[] { pastKeys, keys }, 2), torch.cat(new[] { pastValues, values }, 2));
    }

    public void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
    }
}
