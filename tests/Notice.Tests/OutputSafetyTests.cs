using System.CommandLine;
using Notice.Cli;
using Notice.Cli.Commands;
using Notice.Core;
using Notice.Core.Analysis;
using Notice.Core.Tasks;

namespace Notice.Tests;

/// <summary>Outputs that must never be silently lost: analyze replaces and removes only what it
/// wrote, select never overwrites without --force, and CSV text a spreadsheet would run is escaped.</summary>
public sealed class OutputSafetyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-outputs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Task<int> Cli(Command command, params string[] args) => CliErrors.InvokeAsync(new RootCommand { command }, args);

    [Fact]
    public async Task AnalyzeKeepsAUsersFilesAndReplacesOnlyItsOwn()
    {
        var results = Path.Combine(_dir, "results");
        var outDir = Path.Combine(_dir, "analysis");
        await PlantedRun.WriteFolderAsync(results);
        var figures = Path.Combine(outDir, ReportWriter.FiguresFolder);
        Directory.CreateDirectory(figures);
        var mine = Path.Combine(figures, "module_mine.png");
        File.WriteAllBytes(mine, [1, 2, 3]);

        Assert.Equal(0, await Cli(AnalyzeCommand.Create(), "analyze", "--results", results, "--out", outDir));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(mine));
        var manifest = File.ReadAllLines(Path.Combine(outDir, ReportWriter.ManifestFile));
        Assert.Contains(ReportWriter.ReportFile, manifest);
        Assert.Equal(PlantedRun.ExpectedFigures, manifest.Count(l => l.StartsWith("figures/", StringComparison.Ordinal)));
        Assert.DoesNotContain("figures/module_mine.png", manifest);

        // Again into the same folder: its own files are replaced, the user's stays.
        Assert.Equal(0, await Cli(AnalyzeCommand.Create(), "analyze", "--results", results, "--out", outDir));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(mine));

        // A figure an earlier analysis wrote and this one does not is removed; lines naming anything
        // else (another folder, a user's file) never delete it.
        var stale = Path.Combine(figures, "heads_old.png");
        File.WriteAllBytes(stale, [4]);
        var victim = Path.Combine(_dir, "victim.txt");
        File.WriteAllText(victim, "keep");
        File.AppendAllLines(Path.Combine(outDir, ReportWriter.ManifestFile),
            ["figures/heads_old.png", "../victim.txt", "figures/../../victim.txt", victim, "figures/mine.txt"]);
        File.WriteAllText(Path.Combine(figures, "mine.txt"), "keep");
        Assert.Equal(0, await Cli(AnalyzeCommand.Create(), "analyze", "--results", results, "--out", outDir));
        Assert.False(File.Exists(stale));
        Assert.Equal("keep", File.ReadAllText(victim));
        Assert.Equal("keep", File.ReadAllText(Path.Combine(figures, "mine.txt")));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(mine));
        Assert.DoesNotContain("../victim.txt", File.ReadAllLines(Path.Combine(outDir, ReportWriter.ManifestFile)));
    }

    [Fact]
    public async Task AnalyzeRefusesToReplaceAFileItDidNotWriteUnlessForced()
    {
        var results = Path.Combine(_dir, "results");
        var outDir = Path.Combine(_dir, "analysis");
        await PlantedRun.WriteFolderAsync(results);
        Directory.CreateDirectory(outDir);
        var report = Path.Combine(outDir, ReportWriter.ReportFile);
        File.WriteAllText(report, "my report");

        var e = await Assert.ThrowsAsync<OutputExistsException>(() => ReportWriter.WriteAsync(results, outDir));
        Assert.Contains("report.html exists and notice analyze did not write it (--force replaces it)", e.Message);
        Assert.Equal(2, await Cli(AnalyzeCommand.Create(), "analyze", "--results", results, "--out", outDir));
        Assert.Equal("my report", File.ReadAllText(report));
        Assert.False(Directory.Exists(Path.Combine(outDir, ReportWriter.FiguresFolder)));

        Assert.Equal(0, await Cli(AnalyzeCommand.Create(), "analyze", "--results", results, "--out", outDir, "--force"));
        Assert.StartsWith("<!doctype html>", File.ReadAllText(report), StringComparison.OrdinalIgnoreCase);
        Assert.Contains(ReportWriter.ReportFile, File.ReadAllLines(Path.Combine(outDir, ReportWriter.ManifestFile)));
    }

    [Fact]
    public async Task SelectRefusesToOverwriteItsOutputUnlessForced()
    {
        var output = Path.Combine(_dir, "selected.jsonl");
        File.WriteAllText(output, "mine\n");
        string[] args = ["select", "--model", Fixtures.BlipTiny, "--pairs", Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"), "--out", output];
        Assert.Equal(2, await Cli(SelectCommand.Create(), args));
        Assert.Equal("mine\n", File.ReadAllText(output));
        Assert.False(File.Exists(Path.Combine(_dir, "selected.accuracy.csv")));

        Assert.Equal(0, await Cli(SelectCommand.Create(), [.. args, "--force"]));
        Assert.NotEqual("mine\n", File.ReadAllText(output));
        Assert.True(File.Exists(Path.Combine(_dir, "selected.accuracy.csv")));
        // Its own tables from the last run are outputs too: still refused without --force.
        File.Delete(output);
        Assert.Equal(2, await Cli(SelectCommand.Create(), args));
    }

    [Fact]
    public void AccuracyTablesEscapeFormulasAndKeepNumbers()
    {
        var path = Path.Combine(_dir, "accuracy.csv");
        SelectCommand.WriteAccuracyCsv(path, [new AccuracyRow("=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", 3, 2), new AccuracyRow("@sum", "-1", 4, 4)]);
        var lines = File.ReadAllLines(path);
        Assert.Equal("task,category,samples,correct,accuracy", lines[0]);
        Assert.Equal("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",'+cmd|' /C calc'!A0,3,2,0.6667", lines[1]);
        Assert.Equal("'@sum,'-1,4,4,1", lines[2]);
    }
}
