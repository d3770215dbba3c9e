namespace Notice.Core.Tasks;

/// <summary>
/// Seeds derived from a user seed and a name or index, identical on every run and machine
/// (string.GetHashCode is randomized per process, so it cannot be used). Giving each sample its
/// own generator keeps output identical whatever order or thread the samples are made on.
/// </summary>
internal static class StableSeed
{
    public static int Derive(int seed, string name, long index = 0)
    {
        // FNV-1a over the name, then SplitMix64 finalization over (seed, hash, index).
        ulong hash = 14695981039346656037UL;
        foreach (var c in name)
        {
            hash ^= c;
            hash *= 1099511628211UL;
        }
        ulong z = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ hash ^ ((ulong)index * 0xBF58476D1CE4E5B9UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z & 0x7FFFFFFF);
    }

    public static Random Random(int seed, string name, long index = 0) => new(Derive(seed, name, index));
}
