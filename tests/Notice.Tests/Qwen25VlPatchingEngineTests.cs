using System.Text.Json;
using Notice.Core.Experiments;
using Notice.Core.Families;
using Notice.Core.Families.Qwen25Vl;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm.Checkpoints;
using Xunit.Abstractions;

namespace Notice.Tests;

/// <summary>
/// The Qwen2.5-VL family's engine on tests/fixtures/qwen25vl-tiny: the fixture's patching tables
/// (notice_patching.*) through the fast path (KV-cut restart, M-RoPE ids narrowed) and through the plain
/// path; fast == plain on the same units in every mode and batch size; what its encoder and engine refuse.
/// </summary>
public sealed class Qwen25VlPatchingEngineTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;
    private static string Pairs => Path.Combine(QwenTinyModel.Folder, "pairs.jsonl");
    private static readonly Qwen25VlFamily Family = new();

    private static PairRecord Record(string id) => PairsManifest.Read(Pairs).Single(r => r.Id == id);

    private static Qwen25VlPatchingEngine Engine(int batchSize = 64) =>
        new(QwenTinyModel.Vqa.Model, new PatchingOptions { BatchSize = batchSize });

    private static EncodedSample Encode(string id) => new Qwen25VlSampleEncoder(QwenTinyModel.Vqa, Pairs).Encode(Record(id));

    [Fact]
    public void TheFamilyIsRegisteredAndReadsTheFolder()
    {
        var family = ModelFamilies.Of(QwenTinyModel.Folder);
        Assert.IsType<Qwen25VlFamily>(family);
        Assert.Equal(new ModelShape(3, 4), family.Shape(QwenTinyModel.Folder));
        Assert.Equal(["layer", "attn", "mlp", "heads:attn"], family.DefaultSites.Select(s => s.Name));
        Assert.Equal(PositionSelection.Last, family.DefaultPositions(family.Site("heads:attn")));
        Assert.Equal(PositionSelection.All, family.DefaultPositions(family.Site("mlp")));
        // `all` = every token but the image's: 45 - 12 (colors) and 35 - 4 (yesno), from the tokenizer alone.
        var count = family.PromptPositionCounter(QwenTinyModel.Folder, CompatMode.Default);
        Assert.Equal(33, count(Record("colors").Prompt));
        Assert.Equal(31, count(Record("yesno").Prompt));
        Assert.Equal(1, family.WordTokenCounter(QwenTinyModel.Folder)("green"));
    }

    public static TheoryData<string, bool> TableCases => new()
    {
        { "colors.image", false }, { "colors.image", true }, { "yesno.text", false }, { "yesno.text", true },
    };

    /// <summary>Every unit of a fixture table, from the manifest record through the encoder and the engine.</summary>
    [Theory]
    [MemberData(nameof(TableCases))]
    public void ReproducesTheFixtureTables(string key, bool plain)
    {
        using var tables = SafeTensorsFile.Open(Path.Combine(QwenTinyModel.Folder, "notice_patching.safetensors"));
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(QwenTinyModel.Folder, "notice_patching.json")));
        var meta = json.RootElement.GetProperty("samples").EnumerateArray().First(s => s.GetProperty("key").GetString() == key);
        string id = key.Split('.')[0];
        var mode = key.EndsWith(".image") ? CorruptionMode.Image : CorruptionMode.Text;

        var sample = Encode(id);
        // The encoder builds the fixture's inputs: ids (image pads expanded), answer tokens, answer position.
        Assert.Equal(tables.Read($"{key}.inputs.clean.input_ids").data<long>().ToArray(), sample.Inputs.CleanIds.data<long>().ToArray());
        if (mode == CorruptionMode.Text)
            Assert.Equal(tables.Read($"{key}.inputs.corrupt.input_ids").data<long>().ToArray(), sample.Inputs.CorruptIds!.data<long>().ToArray());
        Assert.Equal(tables.Read($"{key}.answer_tokens").data<long>().ToArray(), new[] { sample.Inputs.CorrectId, sample.Inputs.IncorrectId });
        Assert.Equal(meta.GetProperty("answer_word_position").GetInt32(), sample.AnswerPosition);

        using var backend = Family.LoadBackend(QwenTinyModel.Folder, new PatchingOptions { BatchSize = 7 }, Pairs);
        using var prepared = backend.Engine.Prepare(sample.Inputs, mode);
        var baseline = tables.Read($"{key}.baseline.logits");
        Assert.Equal(baseline[0].softmax(-1)[sample.Inputs.CorrectId].item<float>(), prepared.Baseline.ProbClean, 1e-5);
        Assert.Equal(baseline[1].softmax(-1)[sample.Inputs.CorrectId].item<float>(), prepared.Baseline.ProbCorrupt, 1e-5);

        // `all` is the fixture's module-wise positions; `answer` and `last` its head-wise ones.
        var modulePositions = tables.Read($"{key}.module_wise_positions").data<long>().Select(p => (int)p).ToArray();
        var spec = new ExperimentSpec { ModelDir = QwenTinyModel.Folder, PairsPath = Pairs, Modes = [mode] };
        var layerUnits = backend.Plan(Qwen25VlSites.Layer, sample, prepared, spec with { Positions = PositionSelection.All });
        Assert.Equal(modulePositions, layerUnits.Select(u => u.Position).Distinct());
        var answerUnits = backend.Plan(Qwen25VlSites.AttnHeads, sample, prepared, spec with { Positions = PositionSelection.Parse("answer") });
        Assert.All(answerUnits, u => Assert.Equal(meta.GetProperty("answer_word_position").GetInt32(), u.Position));
        var lastUnits = backend.Plan(Qwen25VlSites.AttnHeads, sample, prepared, spec);   // heads default to `last`
        Assert.All(lastUnits, u => Assert.Equal(meta.GetProperty("last_position").GetInt32(), u.Position));

        var expected = new List<(PatchUnit Unit, float[] Scores)>();
        foreach (var (site, table) in new[] { (Qwen25VlSites.Layer, "layer"), (Qwen25VlSites.Attn, "attention_block"), (Qwen25VlSites.Mlp, "mlp_block") })
        {
            var scores = tables.Read($"{key}.{table}.corrected.scores");
            for (int r = 0; r < modulePositions.Length; r++)
                for (int l = 0; l < 3; l++)
                    expected.Add((new PatchUnit(site, l, -1, modulePositions[r]), scores[r, l].data<float>().ToArray()));
        }
        foreach (var u in answerUnits.Concat(lastUnits))
        {
            string table = u.Position == sample.AnswerPosition ? "corrected" : "lastpos";
            expected.Add((u, tables.Read($"{key}.attention_block.head{u.Head}.{table}.scores")[0, u.Layer].data<float>().ToArray()));
        }

        var units = expected.Select(e => e.Unit).ToList();
        var results = plain ? backend.Engine.RunPlain(prepared, units) : backend.Engine.Run(prepared, units);
        double worst = 0;
        for (int k = 0; k < units.Count; k++)
        {
            Assert.Equal(units[k], results[k].Unit);
            var got = results[k].Metrics.ToArray();
            for (int m = 0; m < 4; m++)
            {
                double d = Math.Abs(got[m] - expected[k].Scores[m]);
                worst = Math.Max(worst, d);
                Assert.True(d <= Tolerance, $"{key} {units[k]} metric {m}: {got[m]} vs {expected[k].Scores[m]}");
            }
        }
        output.WriteLine($"{key} ({(plain ? "plain" : "fast")}): {units.Count} units, worst metric difference {worst:E2}");
    }

    public static TheoryData<string, string, int> FastCases => new()
    {
        { "colors", "image", 1 }, { "colors", "image", 3 }, { "colors", "image", 64 },
        { "colors", "noise", 1 }, { "colors", "noise", 3 }, { "colors", "noise", 64 },
        { "yesno", "text", 3 }, { "yesno", "noise", 64 },
    };

    /// <summary>The fast path (KV-cut restart, batched rows) equals the plain full recompute on the same units.</summary>
    [Theory]
    [MemberData(nameof(FastCases))]
    public void FastEqualsPlain(string id, string modeName, int batchSize)
    {
        var mode = Enum.Parse<CorruptionMode>(modeName, ignoreCase: true);
        var sample = Encode(id);
        using var engine = Engine(batchSize);
        using var prepared = engine.Prepare(sample.Inputs, mode);
        int image = sample.ImagePosition, tokens = sample.CleanTokens.Count(t => t == "<|image_pad|>");
        var text = Enumerable.Range(0, prepared.Positions).Where(p => p < image || p >= image + tokens).ToList();
        var units = new List<PatchUnit>();
        foreach (var p in text)
            for (int l = 0; l < 3; l++)
                foreach (var site in new[] { Qwen25VlSites.Layer, Qwen25VlSites.Attn, Qwen25VlSites.Mlp })
                    units.Add(new PatchUnit(site, l, -1, p));
        foreach (var p in new[] { image - 1, image + tokens, sample.AnswerPosition, prepared.Positions - 1 })
            for (int l = 0; l < 3; l++)
                for (int h = 0; h < 4; h++)
                    units.Add(new PatchUnit(Qwen25VlSites.AttnHeads, l, h, p));

        var fast = engine.Run(prepared, units);
        var plain = engine.RunPlain(prepared, units);
        double worst = 0;
        for (int k = 0; k < units.Count; k++)
        {
            Assert.Equal(units[k], fast[k].Unit);
            for (int m = 0; m < 4; m++)
            {
                double d = Math.Abs(fast[k].Metrics.Values[m] - plain[k].Metrics.Values[m]);
                worst = Math.Max(worst, d);
                Assert.True(d <= Tolerance, $"{id} {mode} {units[k]} metric {m}: fast {fast[k].Metrics.Values[m]} vs plain {plain[k].Metrics.Values[m]}");
            }
        }
        // Before the first difference between the runs nothing changes: the unpatched scores.
        if (mode != CorruptionMode.Text)
            foreach (var r in fast.Where(r => r.Unit.Position < image))
                Assert.Equal(prepared.Baseline.Unpatched.ProbPatched, r.Metrics.ProbPatched, 1e-6);
        output.WriteLine($"{id} {mode} batch {batchSize}: {units.Count} units, worst fast-plain difference {worst:E2}");
    }

    [Fact]
    public void NoiseIsSeededAndMovesTheAnswer()
    {
        var sample = Encode("colors");
        using var engine = Engine();
        using var a = engine.Prepare(sample.Inputs, CorruptionMode.Noise);
        using var b = engine.Prepare(sample.Inputs, CorruptionMode.Noise);
        Assert.Equal(a.Baseline.ProbCorrupt, b.Baseline.ProbCorrupt);
        Assert.NotEqual(a.Baseline.ProbClean, a.Baseline.ProbCorrupt);
    }

    [Theory]
    [InlineData("Is the square <|image_pad|> green or yellow?", "2 <|image_pad|> placeholders")]
    [InlineData("<|im_start|>user\nIs the square green or yellow?<|im_end|>\n<|im_start|>assistant\n", "0 <|image_pad|> placeholders")]
    public void APromptWithoutExactlyOneImageIsAOneLineErrorForThatSample(string prompt, string says)
    {
        var record = Record("colors") with { Id = "bad-prompt", Prompt = prompt };
        var e = Assert.Throws<ArgumentException>(() => new Qwen25VlSampleEncoder(QwenTinyModel.Vqa, Pairs).Encode(record));
        Assert.Contains("sample bad-prompt", e.Message);
        Assert.Contains(says, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void ImagesOfDifferentTokenCountsAndImagePositionsAreRefused()
    {
        // yesno's corrupt image (black_square_small_gray, 6 tokens) differs from its clean one (4 tokens).
        var sample = Encode("yesno");
        using var engine = Engine();
        var e = Assert.Throws<ArgumentException>(() => engine.Prepare(sample.Inputs, CorruptionMode.Image));
        Assert.Contains("gives 6 image tokens but the prompt holds 4", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        using var prepared = engine.Prepare(sample.Inputs, CorruptionMode.Text);
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => engine.Run(prepared, [new PatchUnit(Qwen25VlSites.Mlp, 0, -1, sample.ImagePosition + 2)]));
        Assert.Contains("<|image_pad|>", bad.Message);

        using var backend = Family.LoadBackend(QwenTinyModel.Folder, new PatchingOptions(), Pairs);
        var spec = new ExperimentSpec { ModelDir = QwenTinyModel.Folder, PairsPath = Pairs, Positions = PositionSelection.Parse($"{sample.ImagePosition + 1}") };
        var planned = Assert.Throws<ArgumentOutOfRangeException>(() => backend.Plan(Qwen25VlSites.Mlp, sample, prepared, spec));
        Assert.Contains("image's 4 <|image_pad|> tokens", planned.Message);
    }

    [Fact]
    public void TheAttentionProbeReadsTheLastTokenOverTheMergedImageGrid()
    {
        var probe = Family.AttentionProbe(QwenTinyModel.Vqa, Pairs);
        var attention = probe.Read(Record("colors"));   // green_square: resized 84x112, 3 x 4 merged units
        Assert.Equal((3, 4), (attention.Rows, attention.Grid));
        Assert.Equal(3, attention.Patches.Length);
        Assert.All(attention.Patches, layer => Assert.Equal(4, layer.Length));
        Assert.All(attention.Patches.SelectMany(l => l), head => { Assert.Equal(12, head.Length); Assert.Equal(1.0, head.Sum(), 1e-9); });
        Assert.Null(attention.MaskFractions);

        // A mask of the image's size (100 x 76), its left half the object: resized as the image is, it
        // covers the two left columns of merged units (28 px each of 112) and not the two right ones.
        var dir = Directory.CreateTempSubdirectory("notice-qwen-mask-").FullName;
        try
        {
            foreach (var f in new[] { "green_square.png", "yellow_square.png" }) File.Copy(Path.Combine(QwenTinyModel.Folder, f), Path.Combine(dir, f));
            using (var bitmap = new SkiaSharp.SKBitmap(100, 76))
            {
                for (int y = 0; y < 76; y++)
                    for (int x = 0; x < 100; x++) bitmap.SetPixel(x, y, x < 50 ? SkiaSharp.SKColors.White : SkiaSharp.SKColors.Black);
                File.WriteAllBytes(Path.Combine(dir, "mask.png"), bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100).ToArray());
            }
            var pairs = Path.Combine(dir, "pairs.jsonl");
            File.WriteAllLines(pairs, [File.ReadAllLines(Pairs).Single(l => l.Contains("\"id\":\"colors\"")).Replace("\"image\":", "\"mask\":\"mask.png\",\"image\":")]);
            var masked = Family.AttentionProbe(QwenTinyModel.Vqa, pairs).Read(PairsManifest.Read(pairs)[0]);
            var fractions = masked.MaskFractions!;
            Assert.Equal(12, fractions.Length);
            for (int i = 0; i < 12; i++) Assert.Equal(i % 4 < 2 ? 1.0 : 0.0, fractions[i], 0.05);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
