using System.CommandLine;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Notice.Cli;
using Notice.Cli.Commands;
using Notice.Core.Analysis;
using Notice.Core.Experiments;
using Notice.Core.Results;
using SkiaSharp;

namespace Notice.Tests;

/// <summary>
/// A constructed run with known answers: 3 tasks x 3 modes, 4 layers x 6 heads, 3 samples per task,
/// 5 token positions. Background logit_diffs are small (|x| &lt;= 0.1); planted heads score 5 at the
/// last position only, so they stand out only when positions are aggregated by their maximum.
/// </summary>
internal static class PlantedRun
{
    public const string Model = "blip-planted";
    public static readonly string[] Tasks = ["shapes-color", "shapes-count", "shapes-size"];
    public static readonly string[] Modes = ["image", "text", "noise"];
    public static readonly string[] ModuleSites = ["mlp", "cross"];
    public static readonly string[] HeadSites = ["heads:attn", "heads:cross"];
    public static readonly string[] Tokens = ["[CLS]", "is", "the", "shape", "red"];
    public const int Layers = 4, Heads = 6, SamplesPerTask = 3;

    /// <summary>heads:cross heads planted per mode: (head, tasks it is planted in).</summary>
    private static readonly Dictionary<string, (HeadId Head, string[] Tasks)[]> Planted = new()
    {
        ["image"] = [(new(3, 1), Tasks), (new(2, 2), Tasks), (new(0, 5), ["shapes-color", "shapes-count"])],
        ["text"] = [(new(1, 4), Tasks), (new(2, 2), Tasks)],
        ["noise"] = [(new(0, 0), Tasks)],
    };

    public static IEnumerable<ResultRow> Rows()
    {
        foreach (var task in Tasks)
            for (int s = 0; s < SamplesPerTask; s++)
                foreach (var mode in Modes)
                {
                    foreach (var site in ModuleSites)
                        for (int l = 0; l < Layers; l++)
                            for (int p = 0; p < Tokens.Length; p++)
                                yield return Row(task, s, mode, site, l, -1, p, ModuleValue(l, p));
                    for (int l = 0; l < Layers; l++)
                        for (int h = 0; h < Heads; h++)
                            for (int p = 0; p < Tokens.Length; p++)
                            {
                                // heads:attn is flat: every head scores the same, so none stands out.
                                yield return Row(task, s, mode, "heads:attn", l, h, p, 0.05f);
                                bool planted = p == Tokens.Length - 1 && Planted[mode].Any(x => x.Head == new HeadId(l, h) && x.Tasks.Contains(task));
                                yield return Row(task, s, mode, "heads:cross", l, h, p, planted ? 5f : Background(s, l, h, p));
                            }
                }
    }

    /// <summary>Mean over samples of this is what a module heatmap cell shows.</summary>
    public static float ModuleValue(int layer, int position) => layer * 0.25f - position * 0.1f;

    /// <summary>Deterministic values in [-0.1, 0.1].</summary>
    private static float Background(int s, int l, int h, int p) => ((s * 7 + l * 5 + h * 3 + p * 11) % 21 - 10) / 100f;

    private static ResultRow Row(string task, int s, string mode, string site, int layer, int head, int position, float logitDiff) => new()
    {
        Run = "run-planted", Model = Model, Task = task, Category = task[7..], Sample = $"{task}-{s:D2}", Mode = mode, Site = site,
        Layer = layer, Head = head, Position = position, Token = Tokens[position],
        ProbPatched = 0.5f, ProbDiff = 0.1f, LogitDiff = logitDiff, PatchingEffect = logitDiff / 2,
    };

    public static IEnumerable<BaselineRow> Baselines() =>
        from task in Tasks
        from s in Enumerable.Range(0, SamplesPerTask)
        from mode in Modes
        select new BaselineRow
        {
            Run = "run-planted", Model = Model, Task = task, Category = task[7..], Sample = $"{task}-{s:D2}", Mode = mode,
            CorrectToken = "red", IncorrectToken = "blue", CorrectId = 10, IncorrectId = 11,
            // Sample 0 is wrong clean; sample 1 stays correct under corruption; sample 2 flips.
            ProbClean = 0.9f, ProbCorrupt = 0.2f, LogitGapClean = s == 0 ? -1f : 3f, LogitGapCorrupt = s == 1 ? 1f : -2f, Positions = Tokens.Length,
        };

    /// <summary>Writes a results folder as a run does: results.csv (or only results.parquet), baselines, failures, provenance.</summary>
    public static async Task WriteFolderAsync(string dir, bool parquetOnly = false)
    {
        Directory.CreateDirectory(dir);
        var rows = Rows().ToList();
        if (parquetOnly) await ResultsTables.WriteParquetAsync(Path.Combine(dir, ResultsTables.ResultsParquet), rows);
        else ResultsTables.Write(Path.Combine(dir, ResultsTables.ResultsCsv), rows);
        ResultsTables.Write(Path.Combine(dir, ResultsTables.BaselinesCsv), Baselines());
        ResultsTables.Write(Path.Combine(dir, ResultsTables.FailuresCsv),
            [new FailureRow { Run = "run-planted", Sample = "shapes-color-99", Mode = "image", Site = "*", Error = "image <missing> & unreadable" }]);
        File.WriteAllText(Path.Combine(dir, Provenance.FileName), new JsonObject
        {
            ["run"] = "run-planted",
            ["pairs_sha256"] = "abc123",
            ["model_files_sha256"] = new JsonObject { ["model.safetensors"] = "def456" },
            ["modes"] = new JsonArray("image", "text", "noise"),
        }.ToJsonString());
    }

    public static int ExpectedFigures => Tasks.Length * Modes.Length * (ModuleSites.Length + HeadSites.Length);
}

public sealed class AnalysisTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-analysis-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static HeadId H(int l, int h) => new(l, h);

    [Fact]
    public void UniversalHeadsFoundInPlantedTables()
    {
        var tables = HeadTable.FromResults(PlantedRun.Rows());
        Assert.Equal(PlantedRun.Tasks.Length * PlantedRun.Modes.Length * PlantedRun.HeadSites.Length, tables.Count);

        var sets = UniversalHeads.Find(tables);
        Assert.Equal(["heads:attn", "heads:cross"], sets.Select(s => s.Site));
        var cross = sets.Single(s => s.Site == "heads:cross");
        Assert.Equal(PlantedRun.Tasks, cross.VisionTasks);
        Assert.Equal(PlantedRun.Tasks, cross.TextTasks);
        // L0H5 is important under image corruption in two tasks of three: not universal.
        Assert.Equal([H(2, 2), H(3, 1)], cross.Vision);
        Assert.Equal([H(1, 4), H(2, 2)], cross.Text);
        Assert.Equal([H(2, 2)], cross.Multimodal);
        // Noise is a baseline: its planted L0H0 counts nowhere.
        Assert.DoesNotContain(H(0, 0), cross.Vision.Concat(cross.Text));

        var colorImage = tables.Single(t => t.Site == "heads:cross" && t.Task == "shapes-color" && t.Mode == "image");
        Assert.Equal([H(0, 5), H(2, 2), H(3, 1)], colorImage.Important);
        Assert.Equal(PlantedRun.SamplesPerTask, colorImage.Samples);
        Assert.Equal(PlantedRun.Layers * PlantedRun.Heads, colorImage.Heads.Count);
        Assert.Equal(5.0, colorImage.ScoreOf(H(3, 1))!.Mean, 6);

        // Every heads:attn head scores the same: std 0 and no head strictly above the mean.
        var attn = sets.Single(s => s.Site == "heads:attn");
        Assert.Empty(attn.Vision);
        Assert.Empty(attn.Text);
        Assert.All(tables.Where(t => t.Site == "heads:attn"), t => Assert.Equal(0.0, t.Std, 12));
    }

    [Fact]
    public void TableStatisticsUsePopulationStdOverHeads()
    {
        var table = HeadTable.FromScores("m", "t", "image", "heads:cross", 1,
            [new HeadScore(H(0, 0), 1, 1), new HeadScore(H(0, 1), 2, 1), new HeadScore(H(1, 0), 3, 1), new HeadScore(H(1, 1), 4, 1)]);
        Assert.Equal(2.5, table.Mean, 12);
        Assert.Equal(Math.Sqrt(1.25), table.Std, 12); // population: sqrt(((1.5^2 + 0.5^2) * 2) / 4)
        Assert.Equal(2.5 + 2 * Math.Sqrt(1.25), table.Threshold, 12);
        Assert.Empty(table.Important); // 4 < 4.736

        // 11 heads at 0 and one at 10: mean 10/12, population std sqrt(11) * 10 / 12, threshold about 6.36.
        var outlier = HeadTable.FromScores("m", "t", "image", "heads:cross", 1,
            Enumerable.Range(0, 12).Select(i => new HeadScore(H(i / 6, i % 6), i == 7 ? 10 : 0, 1)));
        Assert.Equal(10.0 / 12 + 2 * Math.Sqrt(11) * 10 / 12, outlier.Threshold, 9);
        Assert.Equal([H(1, 1)], outlier.Important);
    }

    [Fact]
    public void HeadScoreIsMeanOverSamplesOfMaxOverPositions()
    {
        ResultRow R(string sample, int position, float v) => new()
        {
            Model = "m", Task = "t", Mode = "image", Site = "heads:cross", Sample = sample, Layer = 1, Head = 2, Position = position, LogitDiff = v,
        };
        var rows = new[] { R("a", 0, 0.1f), R("a", 1, 3f), R("a", 2, -1f), R("b", 0, 2f), R("b", 1, 0.5f), R("b", 2, 0f) };
        var score = HeadTable.FromResults(rows).Single().ScoreOf(H(1, 2))!;
        Assert.Equal(2.5, score.Mean, 6); // (max(0.1, 3, -1) + max(2, 0.5, 0)) / 2
        Assert.Equal(2, score.Samples);
    }

    [Fact]
    public void ModuleMapAveragesSamplesAndLabelsSharedTokens()
    {
        var maps = ModuleMap.FromResults(PlantedRun.Rows());
        Assert.Equal(PlantedRun.Tasks.Length * PlantedRun.Modes.Length * PlantedRun.ModuleSites.Length, maps.Count);
        var m = maps.First(x => x.Site == "mlp");
        Assert.Equal(PlantedRun.Tokens, m.Tokens);
        Assert.Equal([0, 1, 2, 3], m.Layers);
        Assert.Equal(PlantedRun.ModuleValue(3, 2), m.Values[3, 2], 5);

        // Prompts that differ across samples: columns are positions only.
        var differing = PlantedRun.Rows().Where(r => r.Head < 0).Select(r =>
        {
            if (r.Sample.EndsWith("01")) r.Token = "other";
            return r;
        });
        Assert.All(ModuleMap.FromResults(differing), x => Assert.Null(x.Tokens));
    }

    [Fact]
    public void FiguresAreLabelledPngsOfTheirDeclaredSize()
    {
        var module = AnalysisFigures.Module(ModuleMap.FromResults(PlantedRun.Rows())[0]);
        var heads = AnalysisFigures.Heads(HeadTable.FromResults(PlantedRun.Rows()).Single(t => t.Site == "heads:cross" && t.Mode == "image" && t.Task == "shapes-color"));
        Assert.Equal(3, heads.Outlined.Count);
        var wide = new HeatmapFigure
        {
            Title = "wide", XLabel = "token", YLabel = "layer", ColorLabel = "mean logit_diff",
            XTicks = Enumerable.Range(0, 40).Select(i => $"tok{i}").ToList(), YTicks = Enumerable.Range(0, 12).Select(i => $"{i}").ToList(),
            Values = new double[12, 40],
        };
        wide.Values[3, 7] = 1; // one non-zero cell in a sea of zeros

        foreach (var (figure, width, height) in new[] { (module, 720, 480), (heads, 720, 480), (wide, 230 + 34 * 40, wide.Height) })
        {
            var png = figure.RenderPng();
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
            using var bitmap = SKBitmap.Decode(png);
            Assert.NotNull(bitmap);
            Assert.Equal((width, height), (bitmap.Width, bitmap.Height));
            Assert.Equal((figure.Width, figure.Height), (bitmap.Width, bitmap.Height));
            // Text, colour bar and cells: many colours, including near-black text and white background.
            var colours = bitmap.Pixels.Distinct().ToList();
            Assert.True(colours.Count > 50, $"{figure.Title}: only {colours.Count} colours");
            Assert.Contains(colours, c => c.Red < 60 && c.Green < 60 && c.Blue < 60);
            Assert.Contains(SKColors.White, colours);
        }
        Assert.True(wide.Height > 480);
    }

    [Fact]
    public async Task ReportEmbedsEveryFigureAndTheUniversalHeadTable()
    {
        var results = Path.Combine(_dir, "results");
        var outDir = Path.Combine(_dir, "analysis");
        await PlantedRun.WriteFolderAsync(results);

        var files = await ReportWriter.WriteAsync(results, outDir);

        Assert.Equal(PlantedRun.ExpectedFigures, files.Figures.Count);
        Assert.All(files.Figures, f => Assert.True(File.Exists(f), f));
        var html = await File.ReadAllTextAsync(files.Report);
        var images = Regex.Matches(html, "<img [^>]*src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\"");
        Assert.Equal(PlantedRun.ExpectedFigures, images.Count);
        Assert.Equal(PlantedRun.ExpectedFigures, Regex.Matches(html, "<img ").Count);
        foreach (Match m in images)
        {
            using var bitmap = SKBitmap.Decode(Convert.FromBase64String(m.Groups[1].Value));
            Assert.True(bitmap is { Width: >= 720, Height: >= 480 });
        }
        Assert.DoesNotContain("src=\"http", html);

        // The universal head table, with the planted answer.
        Assert.Contains("<table class=\"universal-heads\">", html);
        Assert.Contains("<td>heads:cross</td><td>3 / 3</td><td>L2H2, L3H1</td><td>L1H4, L2H2</td><td>L2H2</td>", html);
        // Baselines: 2 of 3 correct clean, 1 of 3 correct corrupt, 1 of the 2 correct ones flips.
        Assert.Contains("<td class=\"num\">66.7%</td><td class=\"num\">33.3%</td><td class=\"num\">50%</td>", html);
        // Failures and provenance, escaped.
        Assert.Contains("image &lt;missing&gt; &amp; unreadable", html);
        Assert.Contains("pairs_sha256", html);
        Assert.Contains("model.safetensors: <code>def456</code>", html);

        var md = await File.ReadAllTextAsync(Path.Combine(outDir, UniversalHeadsDocument.MarkdownFile));
        Assert.Contains("| heads:cross | 3 / 3 | L2H2, L3H1 | L1H4, L2H2 | L2H2 |", md);
        var json = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(outDir, UniversalHeadsDocument.JsonFile)))!;
        var cross = json["models"]![0]!["sites"]!.AsArray().Single(s => s!["site"]!.GetValue<string>() == "heads:cross")!;
        Assert.Equal(["L2H2"], cross["multimodal"]!.AsArray().Select(h => h!["head"]!.GetValue<string>()));
        var evidence = cross["vision"]![0]!["evidence"]!.AsArray();
        Assert.Equal(3, evidence.Count);
        Assert.All(evidence, e => Assert.True(e!["mean"]!.GetValue<double>() > e["threshold"]!.GetValue<double>()));
        Assert.Equal(PlantedRun.Tasks.Length * PlantedRun.Modes.Length * PlantedRun.HeadSites.Length, json["tables"]!.AsArray().Count);

        // One line per module heatmap cell, after the header.
        var means = await File.ReadAllLinesAsync(Path.Combine(outDir, ReportWriter.ModuleMeansFile));
        Assert.Equal("model,task,mode,site,layer,position,token,mean_logit_diff,samples", means[0]);
        Assert.Equal(1 + PlantedRun.Tasks.Length * PlantedRun.Modes.Length * PlantedRun.ModuleSites.Length * PlantedRun.Layers * PlantedRun.Tokens.Length, means.Length);
        var summary = await File.ReadAllLinesAsync(Path.Combine(outDir, ReportWriter.BaselinesSummaryFile));
        Assert.Equal(1 + PlantedRun.Tasks.Length * PlantedRun.Modes.Length, summary.Length);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AnalyzeCommandWritesTheReport(bool parquetOnly)
    {
        var results = Path.Combine(_dir, "results");
        var outDir = Path.Combine(_dir, "out");
        await PlantedRun.WriteFolderAsync(results, parquetOnly);
        var root = new RootCommand { AnalyzeCommand.Create() };

        int rc = await CliErrors.InvokeAsync(root, ["analyze", "--results", results, "--out", outDir]);

        Assert.Equal(0, rc);
        Assert.True(File.Exists(Path.Combine(outDir, ReportWriter.ReportFile)));
        Assert.Equal(PlantedRun.ExpectedFigures, Directory.GetFiles(Path.Combine(outDir, ReportWriter.FiguresFolder), "*.png").Length);
        Assert.Contains("L2H2", await File.ReadAllTextAsync(Path.Combine(outDir, UniversalHeadsDocument.MarkdownFile)));
    }

    [Fact]
    public async Task AnalyzeRefusesAFolderWithoutResults()
    {
        var root = new RootCommand { AnalyzeCommand.Create() };
        Directory.CreateDirectory(Path.Combine(_dir, "empty"));
        int rc = await CliErrors.InvokeAsync(root, ["analyze", "--results", Path.Combine(_dir, "empty"), "--out", Path.Combine(_dir, "out")]);
        Assert.NotEqual(0, rc);
        Assert.False(File.Exists(Path.Combine(_dir, "out", ReportWriter.ReportFile)));
    }
}
