using System.CommandLine;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Vlm;
using Spectre.Console;

namespace Notice.Cli.Commands;

/// <summary>notice patch: a local experiment (no Redis) with a progress bar; Ctrl+C keeps what is
/// finished and the same --out resumes.</summary>
public static class PatchCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder (BLIP or LLaVA, read from its config.json)", DefaultValueFactory = _ => Defaults.Model };
        var pairs = new Option<string>("--pairs") { Description = "pairs manifest (JSON Lines)", Required = true };
        var mode = new Option<string>("--mode") { Description = "corruption: image, text or noise (comma-separated for several)", DefaultValueFactory = _ => "image" };
        var site = new Option<string>("--site") { Description = "BLIP: mlp, attn, cross, mlp-out, heads:attn, heads:cross; LLaVA: layer, attn, mlp, heads:attn (comma-separated for several)", DefaultValueFactory = _ => "mlp" };
        var layers = new Option<string?>("--layers") { Description = "layers, e.g. 0-3,7 (default: all)" };
        var heads = new Option<string?>("--heads") { Description = "heads for head sites (default: all)" };
        var positions = new Option<string>("--positions") { Description = "all, answer, last, or a list of token positions (default: all; LLaVA head sites: last)", DefaultValueFactory = _ => "default" };
        var samples = new Option<int?>("--samples") { Description = "the first N samples of the manifest" };
        var compat = new Option<string>("--compat") { Description = "default (masks applied) or original (the NOTICE code's quirks)", DefaultValueFactory = _ => "default" };
        var batch = new Option<int>("--batch-size") { Description = "units per forward pass", DefaultValueFactory = _ => 64 };
        var noise = new Option<double>("--noise") { Description = "noise mode: standard deviations of noise", DefaultValueFactory = _ => 3.0 };
        var seed = new Option<long>("--seed") { Description = "noise seed", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "results folder (resumed if it exists)", Required = true };
        var dtype = AnswerCommand.DTypeOption();
        var cmd = new Command("patch", "run activation patching locally and write the results table")
            { model, pairs, mode, site, layers, heads, positions, samples, compat, batch, noise, seed, output, dtype };
        cmd.SetAction(async (pr, cancel) =>
        {
            var modelDir = pr.GetValue(model)!;
            var architecture = VlmModel.ArchitectureOf(modelDir);
            VlmModel.ParseDType(pr.GetValue(dtype)!);   // a bad --dtype fails before the run starts
            var spec = new ExperimentSpec
            {
                ModelDir = modelDir,
                PairsPath = pr.GetValue(pairs)!,
                Modes = Split(pr.GetValue(mode)!).Select(ParseMode).ToList(),
                Sites = Split(pr.GetValue(site)!).Select(s => PatchSite.Parse(s, architecture)).ToList(),
                Layers = pr.GetValue(layers) is { } l ? IntList.Parse(l, "--layers") : null,
                Heads = pr.GetValue(heads) is { } h ? IntList.Parse(h, "--heads") : null,
                Positions = PositionSelection.Parse(pr.GetValue(positions)!),
                Samples = pr.GetValue(samples),
                DType = pr.GetValue(dtype)!,
                Patching = new PatchingOptions
                {
                    Compat = pr.GetValue(compat) switch
                    {
                        "default" => CompatMode.Default,
                        "original" => CompatMode.Original,
                        var c => throw new ArgumentException($"--compat: expected default or original, found '{c}'"),
                    },
                    BatchSize = Math.Max(1, pr.GetValue(batch)),
                    NoiseMultiple = pr.GetValue(noise),
                    NoiseSeed = pr.GetValue(seed),
                },
            };
            return await RunAsync(spec, pr.GetValue(output)!, cancel);
        });
        return cmd;
    }

    internal static IEnumerable<string> Split(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    internal static CorruptionMode ParseMode(string s) => s switch
    {
        "image" or "sip" => CorruptionMode.Image,
        "text" or "str" => CorruptionMode.Text,
        "noise" => CorruptionMode.Noise,
        _ => throw new ArgumentException($"--mode: expected image, text or noise, found '{s}'"),
    };

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
