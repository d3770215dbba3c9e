using System.Globalization;

namespace Notice.AppHost;

/// <summary>
/// The experiment options given after `--` (dotnet run --project Notice.AppHost -- --model DIR ...).
/// What is not ours is passed on to Aspire's own configuration.
/// </summary>
public sealed class AppHostOptions
{
    public string? Model { get; private set; }
    public string? Pairs { get; private set; }
    public string Devices { get; private set; } = "cpu,cpu";
    public int? Samples { get; private set; }
    public string? Out { get; private set; }
    public bool ExitWhenDone { get; private set; }
    /// <summary>"server" (redis-server as an executable, the default), "container" (Aspire.Hosting.Redis), or set
    /// ConnectionStrings:redis to use an existing server.</summary>
    public string Redis { get; private set; } = "server";
    public string? Modes { get; private set; }
    public string? Sites { get; private set; }
    public string? Positions { get; private set; }
    public string? Layers { get; private set; }
    public string? Compat { get; private set; }

    public static AppHostOptions Parse(string[] args, out string[] rest)
    {
        var o = new AppHostOptions();
        var others = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--model": o.Model = Value(); break;
                case "--pairs": o.Pairs = Value(); break;
                case "--devices": o.Devices = Value(); break;
                case "--samples": o.Samples = int.Parse(Value(), CultureInfo.InvariantCulture); break;
                case "--out": o.Out = Value(); break;
                case "--exit-when-done": o.ExitWhenDone = true; break;
                case "--redis": o.Redis = Value(); break;
                case "--modes": o.Modes = Value(); break;
                case "--sites": o.Sites = Value(); break;
                case "--positions": o.Positions = Value(); break;
                case "--layers": o.Layers = Value(); break;
                case "--compat": o.Compat = Value(); break;
                default: others.Add(args[i]); break;
            }
        }
        if (o.Redis is not ("server" or "container")) throw new ArgumentException($"--redis: expected server or container, found '{o.Redis}'");
        rest = others.ToArray();
        return o;
    }

    /// <summary>The devices, one worker each: "cpu" entries run on the CPU, "cuda:N" entries on GPU N.</summary>
    public IReadOnlyList<string> DeviceList =>
        Devices.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
