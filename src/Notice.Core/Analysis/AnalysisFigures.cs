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

    public static string FileName(string kind, string model, string task, string mode, string site) =>
        string.Join("_", new[] { kind, model, task, mode, site }.Select(Safe)) + ".png";

    /// <summary>Names from results (models, tasks, "heads:attn") made safe for any file system.</summary>
    private static string Safe(string s) =>
        string.Concat(s.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' ? c : '-'));

    private static string Samples(int n) => n == 1 ? "1 sample" : $"{n} samples";

    private static string Text(int i) => i.ToString(CultureInfo.InvariantCulture);
}
