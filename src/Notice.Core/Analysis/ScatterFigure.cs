using ScottPlot;

namespace Notice.Core.Analysis;

/// <summary>
/// An estimate against exact patching drawn to PNG with ScottPlot: one point per head both methods
/// scored (x: exact's mean logit_diff, y: the estimate's), the line y = x for reference, and exact's
/// important heads marked in red (the heads recall@k asks the estimate to rank first).
/// </summary>
public sealed class ScatterFigure
{
    public required string Title { get; init; }
    public required string XLabel { get; init; }
    public required string YLabel { get; init; }

    /// <summary>One point per head: exact's score, the estimate's score, and whether exact calls it important.</summary>
    public required IReadOnlyList<(double Exact, double Estimate, bool Important)> Points { get; init; }

    public int Width { get; init; } = 720;
    public int Height { get; init; } = 560;

    /// <summary>exact vs estimate for the heads two tables of the same (model, task, mode, site) share.</summary>
    public static IReadOnlyList<(double Exact, double Estimate, bool Important)> PointsOf(HeadTable exact, HeadTable estimate)
    {
        var important = exact.Important.ToHashSet();
        return exact.Heads.Where(h => estimate.ScoreOf(h.Id) is not null)
            .Select(h => (h.Mean, estimate.ScoreOf(h.Id)!.Mean, important.Contains(h.Id))).ToList();
    }

    public byte[] RenderPng()
    {
        var plot = new Plot();
        var finite = Points.Where(p => double.IsFinite(p.Exact) && double.IsFinite(p.Estimate)).ToList();
        if (finite.Count > 0)
        {
            double lo = finite.Min(p => Math.Min(p.Exact, p.Estimate)), hi = finite.Max(p => Math.Max(p.Exact, p.Estimate));
            if (hi <= lo) { lo -= 1; hi += 1; }
            var diagonal = plot.Add.Line(lo, lo, hi, hi);
            diagonal.LineStyle.Color = Colors.Gray;
            diagonal.LineStyle.Pattern = LinePattern.Dashed;
            diagonal.LegendText = "y = x";
        }
        var rest = finite.Where(p => !p.Important).ToList();
        var top = finite.Where(p => p.Important).ToList();
        if (rest.Count > 0)
        {
            var s = plot.Add.ScatterPoints(rest.Select(p => p.Exact).ToArray(), rest.Select(p => p.Estimate).ToArray(), Colors.SteelBlue);
            s.MarkerSize = 6;
            s.LegendText = "head";
        }
        if (top.Count > 0)
        {
            var s = plot.Add.ScatterPoints(top.Select(p => p.Exact).ToArray(), top.Select(p => p.Estimate).ToArray(), Colors.Red);
            s.MarkerSize = 9;
            s.LegendText = "exact's important head (mean + 2 sd)";
        }
        plot.Title(Title);
        plot.XLabel(XLabel);
        plot.YLabel(YLabel);
        plot.ShowLegend(Edge.Bottom);   // outside the axes, so it never hides a point
        return plot.GetImageBytes(Width, Height, ImageFormat.Png);
    }
}
