using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Vlm.Checkpoints;

namespace Notice.Tests;

/// <summary>notice patch's engine room: tables written, values as the original, interruption and resume.</summary>
public sealed class LocalRunnerTests : IDisposable
{
    private readonly string _out = Directory.CreateTempSubdirectory("notice-run-").FullName;

    public void Dispose() => Directory.Delete(_out, recursive: true);

    private static ExperimentSpec Spec(params PatchSite[] sites) => new()
    {
        ModelDir = Fixtures.BlipTiny,
        PairsPath = Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"),
        Modes = [CorruptionMode.Image, CorruptionMode.Text],
        Sites = sites,
        Patching = new PatchingOptions { BatchSize = 5 },
    };

    [Fact]
    public async Task WritesTablesWhoseValuesAreTheOriginals()
    {
        var summary = await new LocalRunner().RunAsync(Spec(BlipSites.Mlp, BlipSites.CrossHeads), _out, null, CancellationToken.None);
        Assert.True(summary.Completed);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(_out, ResultsTables.ResultsCsv));
        // shapes: 9 positions x 2 layers x (1 + 4 heads); faces: 11 positions; two modes each.
        Assert.Equal(2 * (9 + 11) * 2 * 5, rows.Count);
        Assert.Equal(rows.Count, rows.Select(r => r.Key).Distinct().Count());
        var parquet = await ResultsTables.ReadParquetAsync<ResultRow>(Path.Combine(_out, ResultsTables.ResultsParquet));
        Assert.Equal(rows.Count, parquet.Count);
        Assert.Equal(rows[17].LogitDiff, parquet[17].LogitDiff);

        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        var expected = reference.Read("shapes.image.output.scores");        // [T, L, 4]
        foreach (var r in rows.Where(r => r.Sample == "shapes-circle-color" && r.Mode == "image" && r.Site == "mlp"))
        {
            var e = expected[r.Position, r.Layer].data<float>().ToArray();
            Assert.Equal(e[0], r.ProbPatched, 1e-4);
            Assert.Equal(e[2], r.LogitDiff, 1e-4);
            Assert.Equal(e[3], r.PatchingEffect, 1e-4);
        }
        var heads = expected = reference.Read("shapes.image.crossattention_block.head2.scores");
        var h2 = rows.Single(r => r.Sample == "shapes-circle-color" && r.Mode == "image" && r.Site == "heads:cross" && r.Head == 2 && r.Layer == 1 && r.Position == 4);
        Assert.Equal(heads[4, 1, 2].item<float>(), h2.LogitDiff, 1e-4);
        Assert.Equal("red", h2.Token);

        var baselines = ResultsTables.Read<BaselineRow>(Path.Combine(_out, ResultsTables.BaselinesCsv));
        Assert.Equal(4, baselines.Count);
        var b = baselines.Single(x => x.Sample == "shapes-circle-color" && x.Mode == "image");
        Assert.Equal(8.32410, b.LogitGapClean, 1e-4);
        Assert.Equal(-7.27507, b.LogitGapCorrupt, 1e-4);

        var provenance = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_out, Provenance.FileName)))!;
        Assert.Equal(Provenance.Sha256(Path.Combine(Fixtures.BlipTiny, "model.safetensors")), provenance["model_files_sha256"]!["model.safetensors"]!.GetValue<string>());
        foreach (var key in new[] { "pairs_sha256", "modes", "sites", "compat", "noise_seed", "dtype", "device", "notice_version" })
            Assert.NotNull(provenance[key]);
    }

    [Fact]
    public async Task InterruptedRunKeepsFinishedGroupsAndResumesWithoutDuplicates()
    {
        using var cancel = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.UnitsDone >= 20) cancel.Cancel(); });
        var first = await new LocalRunner().RunAsync(Spec(BlipSites.Mlp, BlipSites.Cross), _out, progress, cancel.Token);
        Assert.False(first.Completed);
        var partial = ResultsTables.Read<ResultRow>(Path.Combine(_out, ResultsTables.ResultsCsv));
        Assert.NotEmpty(partial);
        Assert.False(File.Exists(Path.Combine(_out, ResultsTables.ResultsParquet)));

        var second = await new LocalRunner().RunAsync(Spec(BlipSites.Mlp, BlipSites.Cross), _out, null, CancellationToken.None);
        Assert.True(second.Completed);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(_out, ResultsTables.ResultsCsv));
        Assert.Equal(2 * (9 + 11) * 2 * 2, rows.Count);
        Assert.Equal(rows.Count, rows.Select(r => r.Key).Distinct().Count());
        Assert.Single(rows.Select(r => r.Run).Distinct());
        foreach (var p in partial)
            Assert.Equal(p.LogitDiff, rows.Single(r => r.Key == p.Key).LogitDiff);
    }

    [Fact]
    public async Task AHalfWrittenGroupIsDroppedOnResume()
    {
        await new LocalRunner().RunAsync(Spec(BlipSites.Mlp), _out, null, CancellationToken.None);
        var csv = Path.Combine(_out, ResultsTables.ResultsCsv);
        var full = ResultsTables.Read<ResultRow>(csv);
        // Simulate a crash while the last group was being written: its mark is gone, a line is cut.
        var completed = Path.Combine(_out, LocalRunner.CompletedFile);
        var marks = File.ReadAllLines(completed);
        File.WriteAllLines(completed, marks[..^1]);
        var text = File.ReadAllText(csv);
        File.WriteAllText(csv, text[..^15]);
        var again = await new LocalRunner().RunAsync(Spec(BlipSites.Mlp), _out, null, CancellationToken.None);
        Assert.True(again.Completed);
        var rows = ResultsTables.Read<ResultRow>(csv);
        Assert.Equal(full.Count, rows.Count);
        Assert.Equal(full.Select(r => (r.Key, r.LogitDiff)).Order(), rows.Select(r => (r.Key, r.LogitDiff)).Order());
    }

    [Fact]
    public async Task ABadSampleIsReportedAndTheRestRuns()
    {
        var pairs = Path.Combine(_out, "pairs.jsonl");
        foreach (var f in Directory.GetFiles(Fixtures.BlipTiny, "*.png")) File.Copy(f, Path.Combine(_out, Path.GetFileName(f)));
        var lines = File.ReadAllLines(Path.Combine(Fixtures.BlipTiny, "pairs.jsonl")).ToList();
        lines.Add(lines[0].Replace("shapes-circle-color", "broken").Replace("blue_circle_red_square.png", "missing.png"));
        File.WriteAllLines(pairs, lines);
        var outDir = Path.Combine(_out, "run");
        var summary = await new LocalRunner().RunAsync(Spec(BlipSites.Mlp) with { PairsPath = pairs }, outDir, null, CancellationToken.None);
        Assert.True(summary.Completed);
        var failures = ResultsTables.Read<FailureRow>(Path.Combine(outDir, ResultsTables.FailuresCsv));
        var failure = Assert.Single(failures);
        Assert.Equal("broken", failure.Sample);
        Assert.Contains("missing.png", failure.Error);
        Assert.Equal(2 * (9 + 11) * 2, ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv)).Count);
    }

    [Fact]
    public async Task LayersOutOfRangeAreRefusedBeforeAnythingRuns()
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() =>
            new LocalRunner().RunAsync(Spec(BlipSites.Mlp) with { Layers = [0, 5] }, _out, null, CancellationToken.None));
        Assert.Contains("layer 5 is out of range", e.Message);
        Assert.False(File.Exists(Path.Combine(_out, ResultsTables.ResultsCsv)));
    }

    /// <summary>IProgress that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(Action<RunProgress> report) : IProgress<RunProgress>
    {
        public void Report(RunProgress value) => report(value);
    }
}
