using System.CommandLine;

namespace Notice.Cli.Commands;

/// <summary>notice bench: speed of the fast path against the plain path at real model shapes.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var samples = new Option<int>("--samples") { Description = "samples to time", DefaultValueFactory = _ => 2 };
        var plainUnits = new Option<int>("--plain-units") { Description = "units timed on the plain path (it is slow)", DefaultValueFactory = _ => 3 };
        var small = new Option<bool>("--small") { Description = "a small model instead of blip-vqa-base shapes (a quick check)" };
        var cmd = new Command("bench", "units per second of the fast and the plain patching paths") { samples, plainUnits, small };
        cmd.SetAction(pr => Bench.Run(pr.GetValue(samples), pr.GetValue(plainUnits), pr.GetValue(small)));
        return cmd;
    }
}
