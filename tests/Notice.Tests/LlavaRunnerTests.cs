using System.CommandLine;
using System.Text.Json.Nodes;
using Notice.Cli;
using Notice.Cli.Commands;
using Notice.Core.Analysis;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Core.Tasks;
using Notice.Vlm;
using Notice.Vlm.Checkpoints;

namespace Notice.Tests;

/// <summary>notice patch / answer / select / analyze on a LLaVA folder: the same runner and tables as
/// BLIP, the model family read from config.json.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class LlavaRunnerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-llava-run-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Pairs => Path.Combine(Fixtures.LlavaTiny, "pairs.jsonl");

    private static ExperimentSpec Spec(params string[] sites) => new()
    {
        ModelDir = Fixtures.LlavaTiny,
        PairsPath = Pairs,
        Modes = [CorruptionMode.Image, CorruptionMode.Text],
        Sites = sites.Select(s => new LlavaFamily().Site(s)).ToList(),
        Patching = new PatchingOptions { BatchSize = 8 },
    };

    [Fact]
    public void TheModelFamilyIsReadFromConfigJson()
    {
        Assert.IsType<LlavaFamily>(ModelFamilies.Of(Fixtures.LlavaTiny));
        Assert.IsType<BlipFamily>(ModelFamilies.Of(Fixtures.BlipTiny));
        Assert.Equal("text.blocks.{l}.mlp.out", new LlavaFamily().Site("mlp").HookPoint);
        Assert.Equal("text.blocks.{l}.resid_post", new BlipFamily().Site("mlp").HookPoint);
    }

    [Fact]
    public async Task WritesTablesWhoseValuesAreTheCorrectedOnes()
    {
        var summary = await new LocalRunner().RunAsync(Spec("layer", "heads:attn"), _dir, null, CancellationToken.None);
        Assert.True(summary.Completed);
        Assert.Equal(0, summary.Failed);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(_dir, ResultsTables.ResultsCsv));
        // layer: every text position (shapes 21 tokens, faces 23, <image> not patched) x 3 layers;
        // heads default to the last position: 3 layers x 4 heads. Both modes.
        Assert.Equal(2 * ((20 + 22) * 3 + 2 * 12), rows.Count);
        Assert.Equal(rows.Count, rows.Select(r => r.Key).Distinct().Count());
        Assert.DoesNotContain(rows, r => r.Position == 4);

        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "notice_patching.safetensors"));
        var layer = reference.Read("shapes.image.layer.corrected.scores");      // [14, 3, 4] over positions 7..20
        foreach (var r in rows.Where(r => r.Sample == "shapes-circle-color" && r.Mode == "image" && r.Site == "layer" && r.Position >= 7))
        {
            var e = layer[r.Position - 7, r.Layer].data<float>().ToArray();
            Assert.Equal(e[0], r.ProbPatched, 1e-4);
            Assert.Equal(e[2], r.LogitDiff, 1e-4);
            Assert.Equal(e[3], r.PatchingEffect, 1e-4);
        }
        var faces = reference.Read("faces.text.attention_block.head2.lastpos.scores");
        var h2 = rows.Single(r => r.Sample == "faces-left-emotion" && r.Mode == "text" && r.Site == "heads:attn" && r.Head == 2 && r.Layer == 1);
        Assert.Equal(22, h2.Position);
        Assert.Equal(":", h2.Token);
        Assert.Equal(faces[0, 1, 2].item<float>(), h2.LogitDiff, 1e-4);
        Assert.Equal("\u2581red", rows.First(r => r.Sample == "shapes-circle-color" && r.Position == 10).Token);

        var baselines = ResultsTables.Read<BaselineRow>(Path.Combine(_dir, ResultsTables.BaselinesCsv));
        var b = baselines.Single(x => x.Sample == "shapes-circle-color" && x.Mode == "image");
        Assert.Equal(9.99915, b.LogitGapClean, 1e-4);
        Assert.Equal(-9.93988, b.LogitGapCorrupt, 1e-4);
        Assert.Equal("\u2581red", b.CorrectToken);

        // The analysis reads LLaVA results like any others.
        var files = await ReportWriter.WriteAsync(_dir, Path.Combine(_dir, "analysis"));
        Assert.True(File.Exists(files.Report));
        Assert.NotEmpty(files.Figures);
    }

    [Fact]
    public async Task ARunSkipsOnlyWhatIsBadAndReportsIt()
    {
        var pairs = Path.Combine(_dir, "pairs.jsonl");
        foreach (var f in Directory.GetFiles(Fixtures.LlavaTiny, "*.png")) File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
        var records = PairsManifest.Read(Pairs).ToList();
        // A text pair whose prompts tokenise to different lengths: its text mode fails, its image mode runs.
        records.Add(records[1] with { Id = "faces-longer", CorruptPrompt = "Is the person on the right feeling happy or angry? Answer in one word." });
        PairsManifest.Write(pairs, records);
        var outDir = Path.Combine(_dir, "run");
        // Position 22 exists in the faces prompts (23 tokens) but not in shapes (21): shapes' groups fail.
        var spec = Spec("mlp") with { PairsPath = pairs, Positions = PositionSelection.Parse("7,22") };
        var summary = await new LocalRunner().RunAsync(spec, outDir, null, CancellationToken.None);
        Assert.True(summary.Completed);
        var failures = ResultsTables.Read<FailureRow>(Path.Combine(outDir, ResultsTables.FailuresCsv));
        Assert.Contains(failures, f => f.Sample == "faces-longer" && f.Mode == "text" && f.Error.Contains("same token length"));
        Assert.Contains(failures, f => f.Sample == "shapes-circle-color" && f.Error.Contains("position 22 is out of range: the prompt has positions 0..20"));
        Assert.Equal(3, failures.Count);   // faces-longer text; shapes image and text
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        Assert.Equal(3 * 2 * 3, rows.Count);   // faces image + text, faces-longer image: 2 positions x 3 layers
    }

    [Fact]
    public async Task PatchCommandRunsOnALlavaFolder()
    {
        var outDir = Path.Combine(_dir, "cli");
        var root = new RootCommand { PatchCommand.Create() };
        int rc = await CliErrors.InvokeAsync(root, ["patch", "--model", Fixtures.LlavaTiny, "--pairs", Pairs, "--mode", "image",
            "--site", "attn,heads:attn", "--layers", "2", "--samples", "1", "--out", outDir]);
        Assert.Equal(0, rc);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        Assert.Equal(20 + 4, rows.Count);   // attn at every text position, heads at the last
        var provenance = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, Provenance.FileName)))!;
        Assert.Equal("default", provenance["positions"]!.GetValue<string>());
        Assert.Equal("float32", provenance["dtype"]!.GetValue<string>());

        int bad = await CliErrors.InvokeAsync(root, ["patch", "--model", Fixtures.LlavaTiny, "--pairs", Pairs, "--site", "cross", "--out", Path.Combine(_dir, "bad")]);
        Assert.Equal(2, bad);
    }

    [Fact]
    public async Task AnswerJsonHasTheLastPositionLogits()
    {
        var answer = ((IVisionLanguageModel)LlavaTinyModel.Vqa).Answer(Path.Combine(Fixtures.LlavaTiny, "red_circle_blue_square.png"), "Is the circle red or blue? Answer in one word.");
        var doc = JsonNode.Parse(AnswerCommand.Json(new LlavaFamily(), answer))!;
        Assert.Equal("red.", doc["answer"]!.GetValue<string>());
        Assert.Equal(416, doc["last_position_logits"]!.AsArray().Count);
        Assert.Equal(answer.Ids, doc["answer_ids"]!.AsArray().Select(n => n!.GetValue<long>()));

        var (rc, output, _) = await CliRun.RunAsync(AnswerCommand.Create(), "answer", "--model", Fixtures.LlavaTiny, "--image", Path.Combine(Fixtures.LlavaTiny, "happy_angry_gray.png"),
            "--question", "Is the left person feeling happy or angry? Answer in one word.", "--json", "--dtype", "bfloat16");
        Assert.Equal(0, rc);
        var printed = JsonNode.Parse(output)!;
        Assert.Equal("happy.", printed["answer"]!.GetValue<string>());
        Assert.Equal(416, printed["last_position_logits"]!.AsArray().Count);
    }

    [Fact]
    public void SelectionKeepsWhatLlavaAnswersRight()
    {
        using var vlm = new LlavaFamily().LoadModel(Fixtures.LlavaTiny);
        var records = PairsManifest.Read(Pairs);
        var result = SampleSelector.Select(records, rs => vlm.AnswerBatch(rs.Select(r => (PairsManifest.ResolvePath(Pairs, r.Image), r.Prompt)).ToList()), perTask: 5);
        Assert.Equal(2, result.Selected.Count);   // "red." and "happy." match the answers
    }
}

