using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Notice.Core.Analysis;

/// <summary>
/// report.html: one self-contained page (figures embedded as base64 data URIs, no scripts, no
/// outside files), so it can be mailed or archived with nothing else. Everything from the results
/// folder is HTML-escaped: tokens and error messages are untrusted text.
/// </summary>
public static class HtmlReport
{
    /// <summary>Failure rows shown on the page; failures.csv keeps all of them.</summary>
    public const int MaxFailuresShown = 200;

    private const string Style = """
        body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
        h1, h2, h3 { font-weight: 600; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
        table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 0.9em; }
        th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
        th { background: #f3f3f3; } td:first-child { white-space: nowrap; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
        figure { display: inline-block; margin: .5em; } figure img { max-width: 100%; border: 1px solid #ddd; }
        figcaption { font-size: .8em; color: #555; } p.note { color: #555; font-size: .9em; }
        code { word-break: break-all; }
        """;

    public static string Build(ResultsFolder folder, IReadOnlyList<HeadTable> tables, IReadOnlyList<UniversalHeadSet> sets,
        IReadOnlyList<BaselineSummary> baselines, IReadOnlyList<RenderedFigure> figures, string? primaryMethod = null,
        IReadOnlyList<MethodAgreement>? agreement = null)
    {
        var html = new StringBuilder();
        string run = folder.Provenance?["run"]?.ToString() ?? folder.Results.Select(r => r.Run).FirstOrDefault() ?? "";
        html.AppendLine("<!DOCTYPE html>").AppendLine("<html lang=\"en\"><head><meta charset=\"utf-8\">")
            .AppendLine($"<title>Notice report {E(run)}</title><style>{Style}</style></head><body>")
            .AppendLine($"<h1>Notice report: run {E(run)}</h1>")
            .AppendLine($"<p>From <code>{E(folder.Directory)}</code>. {Overview(folder)}</p>");

        if (primaryMethod is not null)
            html.AppendLine($"<p class=\"note\">This run holds results of several methods; universal heads and figures are from method <code>{E(primaryMethod)}</code> " +
                            "(the other methods' universal heads are in their own universal_heads.METHOD.md).</p>");
        UniversalSection(html, tables, sets);
        MetricSection(html, folder);
        if (agreement is { Count: > 0 }) AgreementSection(html, agreement);
        BaselineSection(html, baselines);
        foreach (var section in figures.GroupBy(f => f.Section))
        {
            html.AppendLine($"<h2>{E(section.Key)}</h2>");
            foreach (var f in section)
                html.AppendLine($"<figure><img alt=\"{E(f.Caption)}\" src=\"data:image/png;base64,{Convert.ToBase64String(f.Png)}\">" +
                                $"<figcaption>{E(f.Caption)} ({E(f.RelativePath)})</figcaption></figure>");
        }
        FailureSection(html, folder);
        ProvenanceSection(html, folder.Provenance);
        html.AppendLine("</body></html>");
        return html.ToString();
    }

    private static string Overview(ResultsFolder folder)
    {
        var r = folder.Results;
        string Names(IEnumerable<string> xs, Func<string, int>? rank = null) =>
            E(string.Join(", ", xs.Distinct().OrderBy(x => rank?.Invoke(x) ?? 0).ThenBy(x => x, StringComparer.Ordinal)));
        return $"{r.Count} patched units from {r.Select(x => x.Sample).Distinct().Count()} samples; " +
               $"models: {Names(r.Select(x => x.Model))}; tasks: {Names(r.Select(x => x.Task))}; " +
               $"modes: {Names(r.Select(x => x.Mode), AnalysisOrder.Mode)}; sites: {Names(r.Select(x => x.Site), AnalysisOrder.Site)}.";
    }

    /// <summary>Every metric of <see cref="Patching.Metrics.All"/>, averaged per (model, task, mode, site,
    /// method): a new metric shows here with nothing else to change.</summary>
    private static void MetricSection(StringBuilder html, ResultsFolder folder)
    {
        var metrics = Patching.Metrics.All;
        html.AppendLine("<h2>Metrics</h2>").AppendLine("<p class=\"note\">" +
            E(string.Join("; ", metrics.Select(m => $"{m.Name}: {m.Description}"))) + ". Means over every unit of a table.</p>");
        var groups = folder.Results.GroupBy(r => (r.Model, r.Task, r.Mode, r.Site, r.Method))
            .OrderBy(g => g.Key.Model, StringComparer.Ordinal).ThenBy(g => g.Key.Task, StringComparer.Ordinal)
            .ThenBy(g => AnalysisOrder.Mode(g.Key.Mode)).ThenBy(g => AnalysisOrder.Site(g.Key.Site)).ThenBy(g => g.Key.Method, StringComparer.Ordinal);
        Table(html, ["model", "task", "mode", "site", "method", "units", .. metrics.Select(m => m.Name)],
            groups.Select(g => new[] { E(g.Key.Model), E(g.Key.Task), E(g.Key.Mode), E(g.Key.Site), E(g.Key.Method), g.Count().ToString(CultureInfo.InvariantCulture) }
                .Concat(metrics.Select(m => g.Select(r => (double)r[m]).Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average().ToString("G4", CultureInfo.InvariantCulture))).ToArray()),
            cssClass: "metric-means");
    }

    private static void UniversalSection(StringBuilder html, IReadOnlyList<HeadTable> tables, IReadOnlyList<UniversalHeadSet> sets)
    {
        html.AppendLine("<h2>Universal heads</h2>").AppendLine($"<p class=\"note\">{E(UniversalHeadsDocument.Rule)}</p>");
        if (sets.Count == 0)
        {
            html.AppendLine("<p>No head-wise results (sites heads:attn, heads:cross) in this run.</p>");
            return;
        }
        foreach (var model in sets.GroupBy(s => s.Model))
        {
            html.AppendLine($"<h3>{E(model.Key)}</h3>");
            Table(html, ["site", "tasks (image / text)", "universal vision heads", "universal text heads", "multimodal heads"],
                model.Select(s => new[] { E(s.Site), $"{s.VisionTasks.Count} / {s.TextTasks.Count}", Heads(s.Vision), Heads(s.Text), Heads(s.Multimodal) }),
                cssClass: "universal-heads");
            var evidence = UniversalHeadsDocument.Evidence(tables, model).ToList();
            if (evidence.Count > 0)
            {
                html.AppendLine("<p>The numbers behind each universal head:</p>");
                Table(html, ["site", "head", "universal as", "task", "mode", "head mean", "table mean", "table std", "threshold"],
                    evidence.Select(e => new[] { E(e.Table.Site), e.Head, e.Kind, E(e.Table.Task), E(e.Table.Mode),
                        Num(e.Score.Mean), Num(e.Table.Mean), Num(e.Table.Std), Num(e.Table.Threshold) }));
            }
            html.AppendLine("<p>Every head table:</p>");
            Table(html, ["site", "task", "mode", "samples", "heads", "mean", "std", "threshold", "important heads (mean)"],
                AnalysisOrder.SiteMajor(tables.Where(t => t.Model == model.Key)).Select(t => new[] { E(t.Site), E(t.Task), E(t.Mode), Int(t.Samples), Int(t.Heads.Count),
                    Num(t.Mean), Num(t.Std), Num(t.Threshold),
                    Or(string.Join(", ", t.Important.Select(h => $"{h} ({UniversalHeadsDocument.Num(t.ScoreOf(h)!.Mean)})"))) }));
        }
    }

    private static void AgreementSection(StringBuilder html, IReadOnlyList<MethodAgreement> agreement)
    {
        html.AppendLine("<h2>Estimates against exact patching</h2>")
            .AppendLine("<p class=\"note\">Per head table, over the heads both methods scored: Spearman's rank correlation of the head scores, " +
                        "and the recall of exact patching's important heads (mean + 2 sd) among the estimate's top k heads, k the number of important heads.</p>");
        Table(html, ["method", "model", "task", "mode", "site", "heads", "Spearman", "important (exact)", "recalled", "recall"],
            agreement.Select(a => new[] { E(a.Method), E(a.Model), E(a.Task), E(a.Mode), E(a.Site), Int(a.Heads), Num(a.Spearman),
                Int(a.ExactImportant), Int(a.Recalled), double.IsNaN(a.Recall) ? "-" : Num(a.Recall) }));
    }

    private static void BaselineSection(StringBuilder html, IReadOnlyList<BaselineSummary> baselines)
    {
        html.AppendLine("<h2>Baselines</h2>")
            .AppendLine("<p class=\"note\">Correct: the correct answer's first token outscores the incorrect one's (logit gap &gt; 0). " +
                        "Flip rate: of the samples correct on the clean input, the share the corruption makes incorrect.</p>");
        if (baselines.Count == 0)
        {
            html.AppendLine("<p>No baselines table in this results folder.</p>");
            return;
        }
        Table(html, ["model", "task", "mode", "samples", "clean accuracy", "corrupt accuracy", "flip rate",
                     "mean P(correct) clean", "mean P(correct) corrupt", "mean logit gap clean", "mean logit gap corrupt"],
            baselines.Select(b => new[] { E(b.Model), E(b.Task), E(b.Mode), Int(b.Samples), Pct(b.CleanAccuracy), Pct(b.CorruptAccuracy), Pct(b.FlipRate),
                Num(b.MeanProbClean), Num(b.MeanProbCorrupt), Num(b.MeanLogitGapClean), Num(b.MeanLogitGapCorrupt) }));
    }

    private static void FailureSection(StringBuilder html, ResultsFolder folder)
    {
        html.AppendLine("<h2>Failures</h2>");
        if (folder.Failures.Count == 0)
        {
            html.AppendLine("<p>None: every planned group ran.</p>");
            return;
        }
        html.AppendLine($"<p>{folder.Failures.Count} samples or groups could not run; the rest of the run went on.</p>");
        Table(html, ["sample", "mode", "site", "error"],
            folder.Failures.Take(MaxFailuresShown).Select(f => new[] { E(f.Sample), E(f.Mode), E(f.Site), E(f.Error) }));
        if (folder.Failures.Count > MaxFailuresShown)
            html.AppendLine($"<p class=\"note\">{folder.Failures.Count - MaxFailuresShown} more in failures.csv.</p>");
    }

    private static void ProvenanceSection(StringBuilder html, JsonObject? provenance)
    {
        html.AppendLine("<h2>Provenance</h2>");
        if (provenance is null)
        {
            html.AppendLine("<p>No provenance.json in this results folder.</p>");
            return;
        }
        Table(html, ["key", "value"], provenance.Select(p => new[]
        {
            E(p.Key),
            p.Value switch
            {
                JsonObject o => string.Join("<br>", o.Select(kv => $"{E(kv.Key)}: <code>{E(kv.Value?.ToString() ?? "null")}</code>")),
                JsonArray a => E(string.Join(", ", a.Select(x => x?.ToString() ?? "null"))),
                null => "null",
                var v => E(v.ToString()),
            },
        }));
    }

    /// <summary>Writes a table; cells are HTML already (callers escape text), numeric ones get class num.</summary>
    private static void Table(StringBuilder html, string[] header, IEnumerable<string[]> rows, string? cssClass = null)
    {
        html.Append(cssClass is null ? "<table>" : $"<table class=\"{cssClass}\">");
        html.Append("<tr>").Append(string.Concat(header.Select(h => $"<th>{E(h)}</th>"))).AppendLine("</tr>");
        foreach (var row in rows)
            html.Append("<tr>").Append(string.Concat(row.Select(c => IsNumber(c) ? $"<td class=\"num\">{c}</td>" : $"<td>{c}</td>"))).AppendLine("</tr>");
        html.AppendLine("</table>");
    }

    private static bool IsNumber(string cell) => double.TryParse(cell.TrimEnd('%'), NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    private static string E(string s) => WebUtility.HtmlEncode(s);

    private static string Num(double x) => UniversalHeadsDocument.Num(x);

    private static string Int(int x) => x.ToString(CultureInfo.InvariantCulture);

    private static string Pct(double x) => double.IsNaN(x) ? "n/a" : (100 * x).ToString("0.#", CultureInfo.InvariantCulture) + "%";

    private static string Heads(IReadOnlyList<HeadId> heads) => Or(string.Join(", ", heads));

    private static string Or(string s) => s.Length == 0 ? "none" : s;
}
