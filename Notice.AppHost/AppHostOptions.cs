using Notice.Core;
using Notice.Core.Experiments;

namespace Notice.AppHost;

/// <summary>
/// The options given after `--` (dotnet run --project Notice.AppHost -- --model DIR ...): the
/// experiment's options (<see cref="ExperimentOptions"/>, the same as `notice patch` takes) and the
/// AppHost's own. What is neither is passed on to Aspire's configuration.
/// </summary>
public sealed class AppHostOptions
{
    public required ExperimentSpec Experiment { get; init; }
    /// <summary>The run's id: the results folder's name and a random suffix, unique on a shared Redis.</summary>
    public required string Run { get; init; }
    public required string Out { get; init; }
    public IReadOnlyList<string> Devices { get; init; } = ["cpu", "cpu"];
    public bool ExitWhenDone { get; init; }
    /// <summary>"server" (redis-server as an executable, the default), "container" (Aspire.Hosting.Redis), or set
    /// ConnectionStrings:redis to use an existing server.</summary>
    public string Redis { get; init; } = "server";
    /// <summary>Keep redis-server's temporary data directory (samples included) after the run.</summary>
    public bool KeepRedisData { get; init; }

    /// <param name="callerDirectory">what relative paths are relative to: the directory the user ran from
    /// (scripts/run.sh passes it as NOTICE_CALLER_DIR), else the current directory</param>
    public static AppHostOptions Parse(string[] args, string callerDirectory, out string[] rest)
    {
        var experiment = new Dictionary<string, string?>();
        var others = new List<string>();
        string devices = "cpu,cpu", redis = "server";
        string? outDir = null;
        bool exitWhenDone = false, keep = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : throw new ArgumentException($"{args[i]}: needs a value");
            var option = ExperimentOptions.Find(args[i]);
            if (option is not null) { experiment[option.Name] = Value(); continue; }
            switch (args[i])
            {
                case "--devices": devices = Value(); break;
                case "--out": outDir = Value(); break;
                case "--exit-when-done": exitWhenDone = true; break;
                case "--keep-redis-data": keep = true; break;
                case "--redis": redis = Value(); break;
                default: others.Add(args[i]); break;
            }
        }
        if (redis is not ("server" or "container")) throw new ArgumentException($"--redis: expected server or container, found '{redis}'");
        var deviceList = devices.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (deviceList.Length == 0) throw new ArgumentException($"--devices: '{devices}' names no device");
        foreach (var d in deviceList)
            if (d != "cpu" && !System.Text.RegularExpressions.Regex.IsMatch(d, @"^cuda(:\d+)?$"))
                throw new ArgumentException($"--devices: '{d}' is not cpu or cuda:N");
        var spec = ExperimentParser.Parse(experiment, callerDirectory, allowGeneratedPairs: true);
        var outFull = Path.GetFullPath(outDir ?? Path.Combine(RepoPaths.RunsFolder, DateTime.Now.ToString("yyyyMMdd-HHmmss")), callerDirectory);
        rest = others.ToArray();
        return new AppHostOptions
        {
            Experiment = spec, Out = outFull, Run = Provenance.NewRunId(Path.GetFileName(outFull.TrimEnd('/'))),
            Devices = deviceList, ExitWhenDone = exitWhenDone, Redis = redis, KeepRedisData = keep,
        };
    }
}
