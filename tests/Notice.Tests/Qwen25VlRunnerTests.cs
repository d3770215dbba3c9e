using System.CommandLine;
using System.Text.Json.Nodes;
using Notice.Cli;
using Notice.Cli.Commands;
using Notice.Core.Experiments;
using Notice.Core.Families.Qwen25Vl;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Vlm.Checkpoints;

namespace Notice.Tests;

/// <summary>`notice patch` and `notice answer --json` on the Qwen2.5-VL fixture folder: the family read
/// from config.json, its default sites and positions, the fixture's numbers in the results table.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class Qwen25VlRunnerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-qwen-run-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Pairs => Path.Combine(QwenTinyModel.Folder, "pairs.jsonl");

    [Fact]
    public async Task PatchCommandWithTheDefaultSitesWritesTheFixtureNumbers()
    {
        var outDir = Path.Combine(_dir, "cli");
        var root = new RootCommand { PatchCommand.Create() };
        int rc = await CliErrors.InvokeAsync(root, ["patch", "--model", QwenTinyModel.Folder, "--pairs", Pairs, "--modes", "image,text", "--out", outDir]);
        Assert.Equal(0, rc);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        // Modules at every text position x 3 layers, heads at the last position x 3 layers x 4 heads:
        // colors (33 text positions) image and text; yesno (31) text only: its corrupt image has another size.
        Assert.Equal(2 * (3 * 33 * 3 + 12) + (3 * 31 * 3 + 12), rows.Count);
        Assert.Equal(rows.Count, rows.Select(r => r.Key).Distinct().Count());
        Assert.Equal(["layer", "attn", "mlp", "heads:attn"], rows.Select(r => r.Site).Distinct());
        var failures = ResultsTables.Read<FailureRow>(Path.Combine(outDir, ResultsTables.FailuresCsv));
        var failure = Assert.Single(failures);
        Assert.Equal(("yesno", "image"), (failure.Sample, failure.Mode));
        Assert.Contains("gives 6 image tokens but the prompt holds 4", failure.Error);

        using var tables = SafeTensorsFile.Open(Path.Combine(QwenTinyModel.Folder, "notice_patching.safetensors"));
        var positions = tables.Read("colors.image.module_wise_positions").data<long>().ToList();
        var mlp = tables.Read("colors.image.mlp_block.corrected.scores");
        foreach (var r in rows.Where(r => r.Sample == "colors" && r.Mode == "image" && r.Site == "mlp"))
        {
            var e = mlp[positions.IndexOf(r.Position), r.Layer].data<float>().ToArray();
            Assert.Equal(e[0], r.ProbPatched, 1e-4);
            Assert.Equal(e[2], r.LogitDiff, 1e-4);
            Assert.Equal(e[3], r.PatchingEffect, 1e-4);
        }
        var head = tables.Read("yesno.text.attention_block.head1.lastpos.scores");
        var h1 = rows.Single(r => r.Sample == "yesno" && r.Mode == "text" && r.Site == "heads:attn" && r.Head == 1 && r.Layer == 2);
        Assert.Equal(34, h1.Position);
        Assert.Equal("\u010a", h1.Token);
        Assert.Equal(head[0, 2, 2].item<float>(), h1.LogitDiff, 1e-4);
        Assert.Equal("\u0120white", rows.First(r => r.Sample == "yesno" && r.Position == 23).Token);   // row 19 of the fixture's module-wise positions
        Assert.DoesNotContain(rows, r => r.Token == "<|image_pad|>");

        var baselines = ResultsTables.Read<BaselineRow>(Path.Combine(outDir, ResultsTables.BaselinesCsv));
        var b = baselines.Single(x => x.Sample == "colors" && x.Mode == "image");
        Assert.Equal(9.62116, b.LogitGapClean, 1e-4);
        Assert.Equal(-9.56750, b.LogitGapCorrupt, 1e-4);
        Assert.Equal("green", b.CorrectToken);

        var provenance = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, Provenance.FileName)))!;
        Assert.Equal("default", provenance["positions"]!.GetValue<string>());
    }

    [Fact]
    public void TheUnitEstimateIsExact()
    {
        var spec = ExperimentParser.Parse(new Dictionary<string, string?>
        {
            ["--model"] = QwenTinyModel.Folder, ["--pairs"] = Pairs, ["--modes"] = "text",
        });
        Assert.Equal(4, spec.Sites.Count);
        var estimator = new UnitEstimator(spec);
        var records = Notice.Core.Tasks.PairsManifest.Read(Pairs).ToList();
        Assert.Equal(3 * 33 * 3 + 12, spec.Sites.Sum(s => estimator.Units(records[0], s)));
        Assert.Equal(3 * 31 * 3 + 12, spec.Sites.Sum(s => estimator.Units(records[1], s)));
    }

    [Fact]
    public async Task AnswerJsonHasTheLastPositionLogits()
    {
        var (rc, output, _) = await CliRun.RunAsync(AnswerCommand.Create(), "answer", "--model", QwenTinyModel.Folder, "--image", Path.Combine(QwenTinyModel.Folder, "green_square.png"),
            "--question", "Is the square green or yellow? Answer with one word.", "--json");
        Assert.Equal(0, rc);
        var printed = JsonNode.Parse(output)!;
        Assert.Equal("green.", printed["answer"]!.GetValue<string>());
        Assert.Equal([319L, 13L, 412L], printed["answer_ids"]!.AsArray().Select(n => n!.GetValue<long>()));
        var logits = printed["last_position_logits"]!.AsArray().Select(n => n!.GetValue<float>()).ToArray();
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        var expected = reference.Read("case0.logits_last")[0].data<float>().ToArray();
        Assert.Equal(448, logits.Length);
        Assert.True(expected.Zip(logits).Max(p => Math.Abs(p.First - p.Second)) < 1e-4);
    }
}
