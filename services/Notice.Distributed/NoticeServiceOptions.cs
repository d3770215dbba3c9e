using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Notice.Core.Experiments;

namespace Notice.Distributed;

/// <summary>
/// The "Notice" configuration section of the services (environment variables Notice__Run, ... as
/// the AppHost sets them, or --Notice:Run=... on a command line). The experiment itself is not here:
/// the coordinator gets it whole, once (<see cref="Experiment"/>), and stores it with the run in
/// Redis, where workers and the aggregator read it by run id.
/// </summary>
public sealed class NoticeServiceOptions
{
    public const string Section = "Notice";

    /// <summary>The run id (unique: a name and a random suffix).</summary>
    public string Run { get; set; } = "";
    /// <summary>Coordinator: the experiment, a base64 MessagePack <see cref="ExperimentSpec"/> (<see cref="Encode"/>).</summary>
    public string Experiment { get; set; } = "";
    /// <summary>Coordinator and aggregator: the results folder.</summary>
    public string Out { get; set; } = "";
    /// <summary>Worker: where this machine keeps the model (empty: the path the run was planned with).</summary>
    public string Model { get; set; } = "";
    public string Device { get; set; } = "cpu";
    /// <summary>Torch threads of a worker (0: torch's default, one per core).</summary>
    public int Threads { get; set; }
    public string? WorkerId { get; set; }
    public bool ExitWhenDone { get; set; } = true;
    /// <summary>Seconds a pending shard may sit idle before another worker claims it.</summary>
    public double ClaimIdleSeconds { get; set; } = 30;

    /// <summary>The experiment as one configuration value.</summary>
    public static string Encode(ExperimentSpec spec) => Convert.ToBase64String(Wire.Write(spec));

    /// <summary>The coordinator's experiment; an ArgumentException when missing or malformed.</summary>
    public ExperimentSpec DecodeExperiment()
    {
        if (string.IsNullOrWhiteSpace(Experiment)) throw new ArgumentException("configuration Notice:Experiment (environment Notice__Experiment) holds no experiment");
        try { return Wire.Read<ExperimentSpec>(Convert.FromBase64String(Experiment)); }
        catch (Exception e) when (e is FormatException or InvalidDataException)
        {
            throw new ArgumentException($"configuration Notice:Experiment is not an encoded experiment: {e.Message}");
        }
    }

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Run)) throw new ArgumentException("configuration Notice:Run (environment Notice__Run) names no run");
    }
}

public static class NoticeServiceOptionsExtensions
{
    /// <summary>Binds the "Notice" section once (eShop's AddOptions().BindConfiguration) and checks it.</summary>
    public static IServiceCollection AddNoticeOptions(this IServiceCollection services)
    {
        services.AddOptions<NoticeServiceOptions>().BindConfiguration(NoticeServiceOptions.Section)
            .Validate(o => !string.IsNullOrWhiteSpace(o.Run), "configuration Notice:Run (environment Notice__Run) names no run");
        services.AddSingleton(sp => sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<NoticeServiceOptions>>().Value);
        return services;
    }
}
