using Microsoft.Extensions.Configuration;
using Notice.Core.Experiments;
using Notice.Core.Patching;

namespace Notice.Distributed;

/// <summary>
/// The "Notice" configuration section every service reads (environment variables Notice__Run,
/// Notice__Model, ... as the AppHost sets them, or command-line --Notice:Run=... elsewhere).
/// </summary>
public sealed class NoticeServiceOptions
{
    public string Run { get; set; } = "";
    public string Model { get; set; } = "";
    public string Pairs { get; set; } = "";
    public string Modes { get; set; } = "image,text";
    public string Sites { get; set; } = "mlp,attn,cross,heads:cross";
    public string? Layers { get; set; }
    public string? Heads { get; set; }
    public string Positions { get; set; } = "all";
    public int? Samples { get; set; }
    public string Compat { get; set; } = "default";
    public int BatchSize { get; set; } = 64;
    public double Noise { get; set; } = 3.0;
    public long Seed { get; set; }
    public string Out { get; set; } = "";
    public string Device { get; set; } = "cpu";
    /// <summary>Torch threads of a worker (0: torch's default, one per core).</summary>
    public int Threads { get; set; }
    public string? WorkerId { get; set; }
    public bool ExitWhenDone { get; set; } = true;
    /// <summary>Seconds a pending shard may sit idle before another worker claims it.</summary>
    public double ClaimIdleSeconds { get; set; } = 30;

    public static NoticeServiceOptions From(IConfiguration configuration)
    {
        var o = new NoticeServiceOptions();
        configuration.GetSection("Notice").Bind(o);
        if (string.IsNullOrWhiteSpace(o.Run)) throw new ArgumentException("configuration Notice:Run (environment Notice__Run) names no run");
        return o;
    }

    public ExperimentSpec ToSpec() => new()
    {
        ModelDir = Model,
        PairsPath = Pairs,
        Modes = Split(Modes).Select(m => m switch
        {
            "image" => CorruptionMode.Image,
            "text" => CorruptionMode.Text,
            "noise" => CorruptionMode.Noise,
            _ => throw new ArgumentException($"Notice:Modes: unknown mode '{m}'"),
        }).ToList(),
        Sites = Split(Sites).Select(PatchSite.Parse).ToList(),
        Layers = string.IsNullOrWhiteSpace(Layers) ? null : IntList.Parse(Layers, "Notice:Layers"),
        Heads = string.IsNullOrWhiteSpace(Heads) ? null : IntList.Parse(Heads, "Notice:Heads"),
        Positions = PositionSelection.Parse(Positions),
        Samples = Samples,
        Patching = new PatchingOptions
        {
            Compat = Compat == "original" ? CompatMode.Original : CompatMode.Default,
            BatchSize = BatchSize,
            NoiseMultiple = Noise,
            NoiseSeed = Seed,
        },
    };

    private static IEnumerable<string> Split(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
