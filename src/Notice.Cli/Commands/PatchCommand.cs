using Notice.Core;
using System.CommandLine;
using Notice.Core.Experiments;
using Spectre.Console;

namespace Notice.Cli.Commands;

/// <summary>notice patch: a local experiment (no Redis) with a progress bar; Ctrl+C keeps what is
/// finished and the same --out resumes.</summary>
public static class PatchCommand
{
    /// <summary>The experiment `notice patch` would run for these arguments (what the AppHost runs for the same options).</summary>
    public static ExperimentSpec Experiment(params string[] args)
    {
        var options = Options();
        var cmd = new Command("patch");
        foreach (var o in options.Values) cmd.Add(o);
        return Experiment(options, cmd.Parse(args));
    }

    // The experiment's options come from one table (ExperimentOptions), shared with the AppHost.
    private static Dictionary<string, Option<string?>> Options() =>
        ExperimentOptions.All.ToDictionary(o => o.Name, o => new Option<string?>(o.Name, o.Aliases)
        {
            Description = o.Default is null ? o.Help : $"{o.Help} [default: {o.Default}]",
        });

    private static ExperimentSpec Experiment(Dictionary<string, Option<string?>> options, ParseResult pr) =>
        ExperimentParser.Parse(options.ToDictionary(o => o.Key, o => pr.GetValue(o.Value)));

    public static Command Create()
    {
        var options = Options();
        var output = new Option<string>("--out") { Description = "results folder (resumed if it holds the same experiment)", Required = true };
        var cmd = new Command("patch", "run activation patching locally and write the results table") { output };
        foreach (var o in options.Values) cmd.Add(o);
        cmd.SetAction(async (pr, cancel) =>
        {
            return await RunAsync(Experiment(options, pr), pr.GetValue(output)!, cancel);
        });
        return cmd;
    }

    private static async Task<int> RunAsync(ExperimentSpec spec, string outDir, CancellationToken cancel)
    {
        var runner = new LocalRunner { Log = m => AnsiConsole.MarkupLineInterpolated($"[yellow]{m}[/]") };
        RunSummary summary = null!;
        bool interactive = !Console.IsOutputRedirected;
        if (interactive)
        {
            await AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .StartAsync(async ctx =>
                {
                    var task = ctx.AddTask("patching", maxValue: 1);
                    var progress = new Progress<RunProgress>(p =>
                    {
                        task.MaxValue = Math.Max(1, p.UnitsTotal);
                        task.Value = p.UnitsDone;
                        task.Description = $"{p.UnitsDone}/{p.UnitsTotal} units, {p.UnitsPerSecond:F1}/s, {p.UnitsFailed} failed";
                    });
                    summary = await runner.RunAsync(spec, outDir, progress, cancel);
                });
        }
        else
        {
            var last = DateTime.MinValue;
            var progress = new Progress<RunProgress>(p =>
            {
                if ((DateTime.UtcNow - last).TotalSeconds < 2) return;
                last = DateTime.UtcNow;
                Console.WriteLine($"{p.UnitsDone}/{p.UnitsTotal} units, {p.UnitsPerSecond:F1} units/s, {p.UnitsFailed} failed ({p.Current})");
            });
            summary = await runner.RunAsync(spec, outDir, progress, cancel);
        }
        Console.WriteLine($"{(summary.Completed ? "completed" : "interrupted")}: {summary.Units} units from {summary.Samples} samples in {summary.Elapsed.TotalSeconds:F1} s, {summary.Failed} failed; results in {summary.OutDir}");
        if (!summary.Completed) Console.WriteLine("run the same command again to resume");
        return summary.Completed ? 0 : 130;
    }
}
