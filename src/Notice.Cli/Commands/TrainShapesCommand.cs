using System.CommandLine;
using System.Diagnostics;
using Notice.Core.Training;
using Spectre.Console;

namespace Notice.Cli.Commands;

/// <summary>notice train-shapes: trains the built-in BLIP-VQA on the synthetic shapes tasks.</summary>
public static class TrainShapesCommand
{
    public static Command Create()
    {
        var defaults = new ShapesTrainingOptions();
        var output = new Option<string>("--out") { Description = "checkpoint folder to write (Hugging Face format)", Required = true };
        var steps = new Option<int>("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => defaults.Steps };
        var seed = new Option<int>("--seed") { Description = "seed of the weights, the data order and the training pairs", DefaultValueFactory = _ => defaults.Seed };
        var size = new Option<int>("--size") { Description = "image size in pixels (a multiple of the patch size, 8)", DefaultValueFactory = _ => defaults.ImageSize };
        var trainPairs = new Option<int>("--train-pairs") { Description = "training pairs rendered per task", DefaultValueFactory = _ => defaults.TrainPairsPerTask };
        var model = defaults.Model;
        var hidden = new Option<int>("--hidden") { Description = "hidden size of the vision and text transformers", DefaultValueFactory = _ => model.HiddenSize };
        var heads = new Option<int>("--heads") { Description = "attention heads per layer (divides --hidden)", DefaultValueFactory = _ => model.Heads };
        var textLayers = new Option<int>("--text-layers") { Description = "layers of the text encoder (and of the decoder, which shares its config)", DefaultValueFactory = _ => model.TextLayers };
        var visionLayers = new Option<int>("--vision-layers") { Description = "layers of the vision encoder", DefaultValueFactory = _ => model.VisionLayers };
        var cmd = new Command("train-shapes", "train the built-in BLIP-VQA on the shapes tasks (CPU) and write it with its held-out accuracy")
        {
            output, steps, seed, size, trainPairs, hidden, heads, textLayers, visionLayers,
        };
        cmd.SetAction(pr =>
        {
            var options = defaults with
            {
                Steps = pr.GetValue(steps),
                Seed = pr.GetValue(seed),
                ImageSize = pr.GetValue(size),
                TrainPairsPerTask = pr.GetValue(trainPairs),
                Model = model with
                {
                    HiddenSize = pr.GetValue(hidden),
                    Heads = pr.GetValue(heads),
                    TextLayers = pr.GetValue(textLayers),
                    VisionLayers = pr.GetValue(visionLayers),
                },
            };
            Run(pr.GetValue(output)!, options);
            return 0;
        });
        return cmd;
    }

    private static void Run(string folder, ShapesTrainingOptions options)
    {
        var clock = Stopwatch.StartNew();
        ShapesTrainingResult? result = null;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var bar = ctx.AddTask("preparing", maxValue: options.Steps);
                // An average over recent steps reads better than one batch's noisy loss.
                double? smoothed = null;
                var callbacks = new ShapesTrainingCallbacks
                {
                    Status = s => AnsiConsole.MarkupLineInterpolated($"[grey]{s}[/]"),
                    Step = s =>
                    {
                        smoothed = smoothed is { } m ? 0.98 * m + 0.02 * s.Loss : s.Loss;
                        bar.Value = s.Step;
                        bar.Description = $"step {s.Step}/{s.Steps}  loss {smoothed:F3}  lr {s.LearningRate:0.0e0}";
                    },
                    Evaluated = (step, accuracy) => AnsiConsole.MarkupLineInterpolated($"step {step}: held-out {accuracy}  (image flips {Mean(accuracy, t => t.ImageFlipRate):P1}, text flips {Mean(accuracy, t => t.TextFlipRate):P1})"),
                };
                result = ShapesTrainer.Train(folder, options, callbacks);
            });
        var accuracy = result!.Accuracy;
        var table = new Table().AddColumns("task", "pairs", "accuracy", "corrupt image → wrong answer", "image flips", "text flips");
        foreach (var (task, t) in accuracy.Tasks)
            table.AddRow(task, $"{t.Pairs}", $"{t.Accuracy:P1}", $"{t.CorruptImageAccuracy:P1}", $"{t.ImageFlipRate:P1}", $"{t.TextFlipRate:P1}");
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"wrote {Path.GetFullPath(folder)} in {clock.Elapsed:mm\\:ss} (final loss {result.MeanLoss(-100):F4})");
    }

    private static double Mean(ShapesAccuracy accuracy, Func<ShapesTaskAccuracy, double> f) => accuracy.Tasks.Values.Average(f);
}
