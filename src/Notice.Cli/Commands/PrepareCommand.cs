using Notice.Core;
using System.CommandLine;
using System.Text.Json.Nodes;
using Notice.Core.Tasks;
using Notice.Vlm.Text;

namespace Notice.Cli.Commands;

/// <summary>notice prepare: a dataset becomes a pairs manifest (design.md §6).</summary>
public static class PrepareCommand
{
    public static Command Create()
    {
        var cmd = new Command("prepare", "turn a dataset into a pairs manifest (pairs.jsonl and images)");
        cmd.Add(Shapes());
        cmd.Add(Svo());
        cmd.Add(MitStates());
        cmd.Add(Fer());
        return cmd;
    }

    private static Option<string> Out() => new("--out") { Description = "output folder (pairs.jsonl is written there)", Required = true };
    private static Option<string> Model() => new("--model") { Description = "model whose tokenizer decides same-length STR options", DefaultValueFactory = _ => RepoPaths.BuiltInModel };
    private static Option<int> Seed() => new("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };

    private static Command Shapes()
    {
        var output = Out(); var model = Model(); var seed = Seed();
        var count = new Option<int>("--count") { Description = "pairs per task", DefaultValueFactory = _ => 100 };
        var size = new Option<int>("--size") { Description = "image size in pixels", DefaultValueFactory = _ => 64 };
        var tasks = new Option<string>("--tasks") { Description = "comma-separated: shapes-color, shapes-shape, shapes-size", DefaultValueFactory = _ => string.Join(",", ShapesTaskGenerator.Tasks) };
        var cmd = new Command("shapes", "the built-in synthetic shapes tasks (no download)") { output, model, seed, count, size, tasks };
        cmd.SetAction(pr =>
        {
            var report = ShapesTaskGenerator.Generate(pr.GetValue(output)!, pr.GetValue(tasks)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), pr.GetValue(count),
                pr.GetValue(size), pr.GetValue(seed), TokenCounter(pr.GetValue(model)!));
            Console.WriteLine(report);
            return 0;
        });
        return cmd;
    }

    private static Command Svo()
    {
        var output = Out(); var model = Model(); var seed = Seed();
        var csv = new Option<string>("--csv") { Description = "SVO-Probes CSV (sentence, pos_triplet, neg_triplet, ...)", Required = true };
        var images = new Option<string>("--images") { Description = "folder of the images (by image id or URL file name)", Required = true };
        var cmd = new Command("svo", "SVO-Probes (subject, verb, object)") { output, model, seed, csv, images };
        cmd.SetAction(pr =>
        {
            var report = SvoProbesReader.Prepare(pr.GetValue(csv)!, pr.GetValue(images)!, pr.GetValue(output)!,
                new SvoProbesOptions { Seed = pr.GetValue(seed), TokenCount = TokenCounter(pr.GetValue(model)!) });
            Console.WriteLine(report);
            return 0;
        });
        return cmd;
    }

    private static Command MitStates()
    {
        var output = Out(); var model = Model(); var seed = Seed();
        var dir = new Option<string>("--dataset") { Description = "MIT-States folder (holding images/<adjective> <noun>/)", Required = true };
        var cmd = new Command("mit-states", "MIT-States (color, shape, texture states)") { output, model, seed, dir };
        cmd.SetAction(pr =>
        {
            var report = MitStatesReader.Prepare(pr.GetValue(dir)!, pr.GetValue(output)!,
                new MitStatesOptions { Seed = pr.GetValue(seed), TokenCount = TokenCounter(pr.GetValue(model)!) });
            Console.WriteLine(report);
            return 0;
        });
        return cmd;
    }

    private static Command Fer()
    {
        var output = Out(); var model = Model(); var seed = Seed();
        var source = new Option<string>("--source") { Description = "fer2013.csv (Kaggle) or a folder with one subfolder per emotion", Required = true };
        var anyOther = new Option<bool>("--any-other") { Description = "wrong answers from any other emotion, not only the opposing group" };
        var usage = new Option<string?>("--usage") { Description = "CSV only: keep rows of this Usage (Training, PublicTest, PrivateTest)" };
        var cmd = new Command("fer2013", "FER-2013 facial expressions") { output, model, seed, source, anyOther, usage };
        cmd.SetAction(pr =>
        {
            var report = Fer2013Reader.Prepare(pr.GetValue(source)!, pr.GetValue(output)!,
                new Fer2013Options { Seed = pr.GetValue(seed), TokenCount = TokenCounter(pr.GetValue(model)!), AnyOtherEmotion = pr.GetValue(anyOther), Usage = pr.GetValue(usage) });
            Console.WriteLine(report);
            return 0;
        });
        return cmd;
    }

    /// <summary>Word pieces per word under the model's own tokenizer (its family read from config.json).</summary>
    internal static Func<string, int> TokenCounter(string modelDir) => Notice.Core.Families.ModelFamilies.Of(modelDir).WordTokenCounter(modelDir);
}
