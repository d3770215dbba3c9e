using System.Globalization;

namespace Notice.Core.Analysis;

/// <summary>The report's figures: what each heatmap shows, how it is titled and labelled, and its file name.</summary>
public static class AnalysisFigures
{
    /// <summary>Token x layer: columns are token positions (labelled with their tokens where the
    /// samples share them), rows are layers.</summary>
    public static HeatmapFigure Module(ModuleMap map) => new()
    {
        Title = $"{map.Model} / {map.Task}: {map.Site} patched, {map.Mode} corruption\n{Samples(map.Samples)}, mean logit_diff per layer and token",
        XLabel = map.Tokens is null ? "token position (prompts differ across samples)" : "token",
        YLabel = "layer",
        ColorLabel = "mean logit_diff (logit gap restored)",
        XTicks = map.Tokens ?? map.Positions.Select(Text).ToList(),
        YTicks = map.Layers.Select(Text).ToList(),
        Values = map.Values,
    };

    /// <summary>Layer x head: columns are heads, rows are layers; heads above the table's threshold
    /// are outlined.</summary>
    public static HeatmapFigure Heads(HeadTable table)
    {
        var values = new double[table.Layers, table.HeadsPerLayer];
        for (int l = 0; l < table.Layers; l++)
            for (int h = 0; h < table.HeadsPerLayer; h++)
                values[l, h] = double.NaN;
        foreach (var h in table.Heads) values[h.Id.Layer, h.Id.Head] = h.Mean;
        return new HeatmapFigure
        {
            Title = $"{table.Model} / {table.Task}: {table.Site} patched, {table.Mode} corruption\n{Samples(table.Samples)}; outlined: > mean + {HeadTable.Sigmas:0} sd = {UniversalHeadsDocument.Num(table.Threshold)}",
            XLabel = "head",
            YLabel = "layer",
            ColorLabel = "mean logit_diff (max over positions)",
            XTicks = Enumerable.Range(0, table.HeadsPerLayer).Select(Text).ToList(),
            YTicks = Enumerable.Range(0, table.Layers).Select(Text).ToList(),
            Values = values,
            Outlined = table.Important.Select(h => (h.Layer, h.Head)).ToList(),
        };
    }

    /// <summary>An estimate's head scores against exact patching's for one table, with how much of exact's
    /// top the estimate's top k recovers (recall@k, <see cref="MethodAgreement"/>) in the title.</summary>
    public static ScatterFigure Scatter(HeadTable exact, HeadTable estimate, MethodAgreement agreement) => new()
    {
        Title = $"{exact.Model} / {exact.Task}: {exact.Site}, {exact.Mode} corruption\n{agreement.Method} vs exact over {agreement.Heads} heads: " +
                $"Spearman {UniversalHeadsDocument.Num(agreement.Spearman)}, {Recall(agreement)}",
        XLabel = "exact mean logit_diff (max over positions)",
        YLabel = $"{agreement.Method} estimate of logit_diff",
        Points = ScatterFigure.PointsOf(exact, estimate),
    };

    /// <summary>"recall@3 2/3 = 0.667", or that exact found no important heads.</summary>
    public static string Recall(MethodAgreement a) => a.ExactImportant == 0
        ? "no important heads in exact's table (recall undefined)"
        : $"recall@{a.ExactImportant} {a.Recalled}/{a.ExactImportant} = {UniversalHeadsDocument.Num(a.Recall)}";

    public static string FileName(string kind, string model, string task, string mode, string site) =>
        string.Join("_", new[] { kind, model, task, mode, site }.Select(Safe)) + ".png";

    /// <summary>Names from results (models, tasks, "heads:attn") made safe for any file system.</summary>
    private static string Safe(string s) =>
        string.Concat(s.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' ? c : '-'));

    private static string Samples(int n) => n == 1 ? "1 sample" : $"{n} samples";

    private static string Text(int i) => i.ToString(CultureInfo.InvariantCulture);
}
