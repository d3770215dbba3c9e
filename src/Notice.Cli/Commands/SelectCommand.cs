using Notice.Core.Families;
using Notice.Core;
using System.CommandLine;
using System.Globalization;
using System.Text;
using Notice.Core.Results;
using Notice.Core.Tasks;
using Notice.Vlm;

namespace Notice.Cli.Commands;

/// <summary>notice select: keep samples the model answers exactly right, balanced.</summary>
public static class SelectCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder (BLIP or LLaVA)", DefaultValueFactory = _ => RepoPaths.BuiltInModel };
        var pairs = new Option<string>("--pairs") { Description = "pairs manifest to select from", Required = true };
        var output = new Option<string>("--out") { Description = "selected manifest (JSON Lines); accuracy tables are written beside it", Required = true };
        var perTask = new Option<int>("--per-task") { Description = "samples kept per task", DefaultValueFactory = _ => 100 };
        var seed = new Option<int>("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };
        var dtype = AnswerCommand.DTypeOption();
        var force = new Option<bool>("--force") { Description = "replace an existing --out manifest and its accuracy tables" };
        var cmd = new Command("select", "keep correctly answered samples, balanced by category and answer order") { model, pairs, output, perTask, seed, dtype, force };
        cmd.SetAction(pr =>
        {
            var manifest = pr.GetValue(pairs)!;
            var outPath = Path.GetFullPath(pr.GetValue(output)!);
            var stem = Path.Combine(Path.GetDirectoryName(outPath)!, Path.GetFileNameWithoutExtension(outPath));
            // Before the model is loaded: a manifest someone made (or a pairs file given as --out by mistake) is never lost.
            OutputFiles.RefuseToOverwrite("notice select", pr.GetValue(force), outPath, stem + ".accuracy.csv", stem + ".accuracy.md");
            var records = PairsManifest.Read(manifest);
            using var vqa = ModelFamilies.Of(pr.GetValue(model)!).LoadModel(pr.GetValue(model)!, VlmModel.ParseDType(pr.GetValue(dtype)!));
            var result = SampleSelector.Select(records, rs =>
            {
                var items = rs.Select(r => (PairsManifest.ResolvePath(manifest, r.Image), r.Prompt)).ToList();
                return vqa.AnswerBatch(items);
            }, pr.GetValue(perTask), pr.GetValue(seed));
            // Image paths are rewritten relative to the new manifest's folder.
            var folder = Path.GetDirectoryName(outPath)!;
            Directory.CreateDirectory(folder);
            PairsManifest.Write(outPath, result.Selected.Select(r => Rebase(PairsManifest.Resolve(manifest, r), folder)));
            WriteAccuracyCsv(stem + ".accuracy.csv", result.Accuracy);
            File.WriteAllText(stem + ".accuracy.md", AccuracyMarkdown(result.Accuracy));
            Console.Write(AccuracyMarkdown(result.Accuracy));
            Console.WriteLine($"selected {result.Selected.Count} of {records.Count} samples -> {outPath}");
            return 0;
        });
        return cmd;
    }

    private static PairRecord Rebase(PairRecord absolute, string folder) => absolute with
    {
        Image = PairsManifest.RelativePath(folder, absolute.Image),
        CorruptImage = PairsManifest.RelativePath(folder, absolute.CorruptImage),
        Mask = absolute.Mask is null ? null : PairsManifest.RelativePath(folder, absolute.Mask),
    };

    /// <summary>task,category,samples,correct,accuracy; task and category escaped as every table Notice writes
    /// (a manifest's "=HYPERLINK(..)" is text, not a formula).</summary>
    public static void WriteAccuracyCsv(string path, IReadOnlyList<AccuracyRow> rows) =>
        ResultsTables.Write(path, rows.Select(r => new AccuracyCsvRow(r.Task, r.Category, r.Samples, r.Correct, Math.Round(r.Accuracy, 4))));

    private sealed record AccuracyCsvRow(string Task, string Category, int Samples, int Correct, double Accuracy);

    /// <summary>The paper's Table 2 shape: exact-match accuracy per task and category.</summary>
    private static string AccuracyMarkdown(IReadOnlyList<AccuracyRow> rows)
    {
        var sb = new StringBuilder("| task | category | samples | correct | accuracy |\n| --- | --- | ---: | ---: | ---: |\n");
        foreach (var r in rows) sb.Append(CultureInfo.InvariantCulture, $"| {r.Task} | {r.Category} | {r.Samples} | {r.Correct} | {r.Accuracy:P1} |\n");
        foreach (var t in rows.GroupBy(r => r.Task))
        {
            int n = t.Sum(r => r.Samples), c = t.Sum(r => r.Correct);
            sb.Append(CultureInfo.InvariantCulture, $"| {t.Key} | (all) | {n} | {c} | {(n == 0 ? 0 : (double)c / n):P1} |\n");
        }
        return sb.ToString();
    }
}
