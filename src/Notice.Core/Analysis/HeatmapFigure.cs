using ScottPlot;

namespace Notice.Core.Analysis;

/// <summary>
/// A labelled heatmap drawn to PNG with ScottPlot: title, both axes named and ticked with their
/// labels (token texts, layer and head numbers), a colour bar with its own label. Row 0 is drawn at
/// the bottom, so layers read upwards as in the paper. The colour scale is diverging and symmetric
/// about zero: a restored logit gap and a worsened one get opposite hues, and white means no effect.
/// </summary>
public sealed class HeatmapFigure
{
    private const int CellWidth = 34, CellHeight = 30;
    private const int MaxLabelChars = 16;

    public required string Title { get; init; }
    public required string XLabel { get; init; }
    public required string YLabel { get; init; }
    public required string ColorLabel { get; init; }

    /// <summary>One label per column of <see cref="Values"/>.</summary>
    public required IReadOnlyList<string> XTicks { get; init; }

    /// <summary>One label per row of <see cref="Values"/>.</summary>
    public required IReadOnlyList<string> YTicks { get; init; }

    /// <summary>[row, column]; NaN cells are drawn grey (no data).</summary>
    public required double[,] Values { get; init; }

    /// <summary>Cells outlined in black, e.g. the heads above a table's threshold.</summary>
    public IReadOnlyList<(int Row, int Column)> Outlined { get; init; } = [];

    public int Rows => Values.GetLength(0);
    public int Columns => Values.GetLength(1);

    /// <summary>Long tick labels are turned 45 degrees and need room below the plot.</summary>
    private bool RotateX => XTicks.Any(t => Short(t).Length > 3) || Columns > 24;

    private int BottomAxis => RotateX ? 40 + (int)(7 * 0.71 * XTicks.Select(t => Short(t).Length).DefaultIfEmpty(0).Max()) : 50;

    /// <summary>Grows with the grid so each cell stays legible; never below 720 x 480.</summary>
    public int Width => Math.Clamp(230 + CellWidth * Columns, 720, 4000);

    public int Height => Math.Clamp(110 + BottomAxis + CellHeight * Rows, 480, 3000);

    public byte[] RenderPng()
    {
        if (XTicks.Count != Columns || YTicks.Count != Rows)
            throw new ArgumentException($"{Title}: {XTicks.Count} x labels and {YTicks.Count} y labels for a {Rows} x {Columns} grid");
        var plot = new Plot();
        var map = plot.Add.Heatmap(Values);
        map.FlipVertically = true;
        map.Colormap = new ScottPlot.Colormaps.Balance();
        double extent = Extent(Values);
        map.ManualRange = new ScottPlot.Range(-extent, extent);
        map.NaNCellColor = Colors.LightGray;
        var bar = plot.Add.ColorBar(map);
        bar.Label = ColorLabel;

        foreach (var (row, column) in Outlined)
        {
            var box = plot.Add.Rectangle(column - 0.5, column + 0.5, row - 0.5, row + 0.5);
            box.FillStyle.Color = Colors.Transparent;
            box.LineStyle.Color = Colors.Black;
            box.LineStyle.Width = 2.5f;
        }

        plot.Title(Title);
        plot.XLabel(XLabel);
        plot.YLabel(YLabel);
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, Columns).Select(i => (double)i).ToArray(), XTicks.Select(Short).ToArray());
        plot.Axes.Left.SetTicks(Enumerable.Range(0, Rows).Select(i => (double)i).ToArray(), YTicks.ToArray());
        if (RotateX)
        {
            plot.Axes.Bottom.TickLabelStyle.Rotation = -45;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
        }
        plot.Axes.Bottom.MinimumSize = BottomAxis;
        plot.Axes.Margins(0, 0);
        plot.HideGrid();
        return plot.GetImageBytes(Width, Height, ImageFormat.Png);
    }

    /// <summary>The colour range: the largest magnitude, so zero sits in the middle (1 when all are zero or missing).</summary>
    private static double Extent(double[,] values)
    {
        double max = 0;
        foreach (var v in values)
            if (double.IsFinite(v)) max = Math.Max(max, Math.Abs(v));
        return max > 0 ? max : 1;
    }

    private static string Short(string label) => label.Length <= MaxLabelChars ? label : label[..(MaxLabelChars - 1)] + "…";
}
