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
        var workers = new Option<string?>("--workers") { Description = "instead: distributed throughput with these worker-process counts, e.g. 1,2" };
        var repeat = new Option<int>("--repeat") { Description = "with --workers: the fixture pairs repeated this many times", DefaultValueFactory = _ => 8 };
        var cmd = new Command("bench", "units per second of the fast and the plain patching paths") { samples, plainUnits, small, workers, repeat };
        cmd.SetAction(async pr => pr.GetValue(workers) is { } w
            ? await Bench.WorkersAsync(Notice.Core.Experiments.IntList.Parse(w, "--workers"), pr.GetValue(repeat))
            : Bench.Run(pr.GetValue(samples), pr.GetValue(plainUnits), pr.GetValue(small)));
        return cmd;
    }
}
