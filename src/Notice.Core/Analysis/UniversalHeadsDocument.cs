using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Notice.Core.Analysis;

/// <summary>
/// The universal head table as files: universal_heads.md for people (a Table 1 per model, then the
/// numbers behind each entry) and universal_heads.json with the same numbers for programs: every
/// table's mean, std and threshold and every head's mean.
/// </summary>
public static class UniversalHeadsDocument
{
    public const string MarkdownFile = "universal_heads.md";
    public const string JsonFile = "universal_heads.json";

    /// <summary>The selection rule in one paragraph, shared by the markdown, the JSON and the report.</summary>
    public static string Rule { get; } =
        "A head's score in a (model, task, mode, site) table is the mean over samples of its logit_diff, taking for each " +
        "sample the largest logit_diff over the positions patched (the one position when only the answer position was patched). " +
        $"A head is important where its score exceeds the table mean by more than {HeadTable.Sigmas:0} standard deviations " +
        "(mean and population standard deviation over the table's heads). Universal vision heads are important under image " +
        "corruption in every task, universal text heads under text corruption in every task, and multimodal heads are universal " +
        "under both (they are listed in all three columns). Noise corruption is a baseline and takes no part.";

    public static string Markdown(IReadOnlyList<HeadTable> tables, IReadOnlyList<UniversalHeadSet> sets)
    {
        var md = new StringBuilder();
        md.AppendLine("# Universal heads").AppendLine().AppendLine(Rule).AppendLine();
        if (sets.Count == 0) md.AppendLine("No head-wise results (sites heads:attn, heads:cross) in this run.");
        foreach (var model in sets.GroupBy(s => s.Model))
        {
            md.AppendLine($"## {Cell(model.Key)}").AppendLine();
            md.AppendLine("| site | tasks (image / text) | universal vision heads | universal text heads | multimodal heads |");
            md.AppendLine("| --- | --- | --- | --- | --- |");
            foreach (var s in model)
                md.AppendLine($"| {Cell(s.Site)} | {s.VisionTasks.Count} / {s.TextTasks.Count} | {Heads(s.Vision)} | {Heads(s.Text)} | {Heads(s.Multimodal)} |");
            md.AppendLine();

            var evidence = Evidence(tables, model).ToList();
            if (evidence.Count > 0)
            {
                md.AppendLine("### The numbers behind each universal head").AppendLine();
                md.AppendLine("| site | head | universal as | task | mode | head mean | table mean | table std | threshold |");
                md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
                foreach (var e in evidence)
                    md.AppendLine($"| {Cell(e.Table.Site)} | {e.Head} | {e.Kind} | {Cell(e.Table.Task)} | {e.Table.Mode} | {Num(e.Score.Mean)} | {Num(e.Table.Mean)} | {Num(e.Table.Std)} | {Num(e.Table.Threshold)} |");
                md.AppendLine();
            }

            md.AppendLine("### Every table").AppendLine();
            md.AppendLine("| site | task | mode | samples | heads | mean | std | threshold | important heads (mean) |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
            foreach (var t in AnalysisOrder.SiteMajor(tables.Where(t => t.Model == model.Key)))
            {
                var important = t.Important.Select(h => $"{h} ({Num(t.ScoreOf(h)!.Mean)})");
                md.AppendLine($"| {Cell(t.Site)} | {Cell(t.Task)} | {Cell(t.Mode)} | {t.Samples} | {t.Heads.Count} | {Num(t.Mean)} | {Num(t.Std)} | {Num(t.Threshold)} | {Or(string.Join(", ", important))} |");
            }
            md.AppendLine();
        }
        return md.ToString();
    }

    public static string Json(IReadOnlyList<HeadTable> tables, IReadOnlyList<UniversalHeadSet> sets)
    {
        var models = new JsonArray();
        foreach (var model in sets.GroupBy(s => s.Model))
        {
            var sites = new JsonArray();
            foreach (var s in model)
            {
                sites.Add(new JsonObject
                {
                    ["site"] = s.Site,
                    ["vision_tasks"] = Strings(s.VisionTasks),
                    ["text_tasks"] = Strings(s.TextTasks),
                    ["vision"] = Universal(tables, s, s.Vision, UniversalHeads.ImageMode),
                    ["text"] = Universal(tables, s, s.Text, UniversalHeads.TextMode),
                    ["multimodal"] = Universal(tables, s, s.Multimodal, UniversalHeads.ImageMode, UniversalHeads.TextMode),
                });
            }
            models.Add(new JsonObject { ["model"] = model.Key, ["sites"] = sites });
        }
        var all = new JsonArray(tables.Select(t => (JsonNode)new JsonObject
        {
            ["model"] = t.Model, ["task"] = t.Task, ["mode"] = t.Mode, ["site"] = t.Site,
            ["samples"] = t.Samples, ["mean"] = t.Mean, ["std"] = t.Std, ["threshold"] = t.Threshold,
            ["important"] = new JsonArray(t.Important.Select(h => (JsonNode)h.ToString()).ToArray()),
            ["heads"] = new JsonArray(t.Heads.Select(h => (JsonNode)new JsonObject
            {
                ["layer"] = h.Id.Layer, ["head"] = h.Id.Head, ["mean"] = h.Mean, ["samples"] = h.Samples,
            }).ToArray()),
        }).ToArray());
        var doc = new JsonObject
        {
            ["rule"] = Rule,
            ["sigmas"] = HeadTable.Sigmas,
            ["std"] = "population",
            ["per_sample_over_positions"] = "max",
            ["metric"] = "logit_diff",
            ["models"] = models,
            ["tables"] = all,
        };
        return doc.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>One line per universal head and table that makes it universal.</summary>
    public static IEnumerable<(string Head, string Kind, HeadTable Table, HeadScore Score)> Evidence(IReadOnlyList<HeadTable> tables, IEnumerable<UniversalHeadSet> sets)
    {
        foreach (var s in sets)
        {
            foreach (var (kind, heads, mode) in new[] { ("vision", s.Vision, UniversalHeads.ImageMode), ("text", s.Text, UniversalHeads.TextMode) })
                foreach (var h in heads)
                    foreach (var t in TablesOf(tables, s, mode))
                        yield return (h.ToString(), s.Multimodal.Contains(h) ? "multimodal" : kind, t, t.ScoreOf(h)!);
        }
    }

    private static IEnumerable<HeadTable> TablesOf(IReadOnlyList<HeadTable> tables, UniversalHeadSet s, string mode) =>
        tables.Where(t => t.Model == s.Model && t.Site == s.Site && t.Mode == mode);

    private static JsonArray Universal(IReadOnlyList<HeadTable> tables, UniversalHeadSet s, IReadOnlyList<HeadId> heads, params string[] modes) =>
        new(heads.Select(h => (JsonNode)new JsonObject
        {
            ["head"] = h.ToString(), ["layer"] = h.Layer, ["index"] = h.Head,
            ["evidence"] = new JsonArray(modes.SelectMany(m => TablesOf(tables, s, m)).Select(t => (JsonNode)new JsonObject
            {
                ["task"] = t.Task, ["mode"] = t.Mode, ["mean"] = t.ScoreOf(h)!.Mean,
                ["table_mean"] = t.Mean, ["table_std"] = t.Std, ["threshold"] = t.Threshold,
            }).ToArray()),
        }).ToArray());

    private static JsonArray Strings(IEnumerable<string> items) => new(items.Select(i => (JsonNode)i).ToArray());

    public static string Num(double x) => x.ToString("G4", CultureInfo.InvariantCulture);

    private static string Heads(IReadOnlyList<HeadId> heads) => Or(string.Join(", ", heads));

    private static string Or(string s) => s.Length == 0 ? "none" : s;

    private static string Cell(string s) => s.Replace("|", "\\|");
}
