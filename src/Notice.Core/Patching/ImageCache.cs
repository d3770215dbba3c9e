namespace Notice.Core.Patching;

/// <summary>
/// Per-image results kept across samples (an image's vision pass is the same in every sample and
/// mode that shows it), keyed by the image's content key; the least recently used go first.
/// </summary>
internal sealed class ImageCache<T>(int capacity, Action<T> dispose)
{
    private readonly Dictionary<string, (T Value, long LastUse)> _items = new(StringComparer.Ordinal);
    private long _clock;

    /// <summary>The cached value of <paramref name="key"/>, or what <paramref name="compute"/> returns
    /// (the cache owns it: it must live outside any dispose scope).</summary>
    public T GetOrAdd(string key, Func<T> compute)
    {
        if (_items.TryGetValue(key, out var hit))
        {
            _items[key] = (hit.Value, ++_clock);
            return hit.Value;
        }
        var value = compute();
        if (_items.Count >= Math.Max(1, capacity))
        {
            var oldest = _items.MinBy(kv => kv.Value.LastUse);
            _items.Remove(oldest.Key);
            dispose(oldest.Value.Value);
        }
        _items[key] = (value, ++_clock);
        return value;
    }

    public void Clear()
    {
        foreach (var (value, _) in _items.Values) dispose(value);
        _items.Clear();
    }
}
