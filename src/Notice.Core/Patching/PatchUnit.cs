using MessagePack;

namespace Notice.Core.Patching;

/// <summary>How the corrupt run differs from the clean one.</summary>
public enum CorruptionMode
{
    /// <summary>SIP: the pair's corrupt image, the same prompt.</summary>
    Image,
    /// <summary>STR: the pair's corrupt prompt, the same image.</summary>
    Text,
    /// <summary>Gaussian noise on the image embeddings (a multiple of their standard deviation).</summary>
    Noise,
}

/// <summary>
/// One patched run: in the corrupt run of a sample, the site's value at (layer, position[, head])
/// is replaced by the clean run's. Head is -1 for whole-module sites.
/// </summary>
[MessagePackObject]
public sealed record PatchUnit([property: Key(0)] PatchSite Site, [property: Key(1)] int Layer, [property: Key(2)] int Head, [property: Key(3)] int Position)
{
    public override string ToString() => Head < 0 ? $"{Site}@L{Layer}.P{Position}" : $"{Site}@L{Layer}.H{Head}.P{Position}";
}

/// <summary>A patched run's metrics, one value per entry of <see cref="Metrics.All"/>, in that order.</summary>
public readonly record struct PatchMetrics(float[] Values)
{
    public float this[Metric metric] => Values[Metrics.IndexOf(metric)];
    public float ProbPatched => this[Metrics.ProbPatched];
    public float ProbDiff => this[Metrics.ProbDiff];
    public float LogitDiff => this[Metrics.LogitDiff];
    public float PatchingEffect => this[Metrics.PatchingEffect];
    public float[] ToArray() => Values;
}

public sealed record UnitResult(PatchUnit Unit, PatchMetrics Metrics);

/// <summary>Clean and corrupt answers of one sample: what every unit's metrics are measured against.</summary>
public sealed record SampleBaseline(long CorrectId, long IncorrectId, float ProbClean, float ProbCorrupt, float LogitGapClean, float LogitGapCorrupt)
{
    /// <summary>The unpatched run's metrics, the original's low_score: [P*(c), 0, 0, 0].</summary>
    public PatchMetrics Unpatched => new(Metrics.All.Select(m => m.Unpatched(this)).ToArray());
}
