using Notice.Core.Families;
using Notice.Core;
using System.CommandLine;
using System.Globalization;
using System.Text;
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
        var cmd = new Command("select", "keep correctly answered samples, balanced by category and answer order") { model, pairs, output, perTask, seed, dtype };
        cmd.SetAction(pr =>
        {
            var manifest = pr.GetValue(pairs)!;
            var outPath = Path.GetFullPath(pr.GetValue(output)!);
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
            var stem = Path.Combine(folder, Path.GetFileNameWithoutExtension(outPath));
            File.WriteAllText(stem + ".accuracy.csv", AccuracyCsv(result.Accuracy));
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

    private static string AccuracyCsv(IReadOnlyList<AccuracyRow> rows)
    {
        var sb = new StringBuilder("task,category,samples,correct,accuracy\n");
        foreach (var r in rows) sb.Append(CultureInfo.InvariantCulture, $"{r.Task},{r.Category},{r.Samples},{r.Correct},{r.Accuracy:F4}\n");
        return sb.ToString();
    }

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
