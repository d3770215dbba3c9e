using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Llava;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>
/// The original NOTICE code's LLaVA patching tables (tests/fixtures/llava-tiny/notice_patching.*):
/// --compat original reproduces every table, the default mode the corrected ones, both through the
/// path the runner takes (manifest record -> encoder -> planned positions -> fast path); and the
/// fast path against the plain one.
/// </summary>
public sealed class LlavaPatchingParityTests(ITestOutputHelper output) : IDisposable
{
    private const double Tolerance = 1e-4;
    private static string FixturePatching => Path.Combine(Fixtures.LlavaTiny, "notice_patching.safetensors");
    private readonly List<IDisposable> _owned = new();

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
    }

    public static TheoryData<string> Keys => new() { "shapes.image", "faces.text" };

    /// <summary>The fixture's samples as manifest records (the clean/corrupt inputs the original ran).</summary>
    private static PairRecord Record(string key) => key switch
    {
        "shapes.image" => new PairRecord
        {
            Id = "shapes", Task = "shapes", Category = "color", Image = "red_circle_blue_square.png", CorruptImage = "blue_circle_red_square.png",
            Prompt = "Is the circle red or blue? Answer in one word.", Answer = "red", WrongAnswer = "blue",
        },
        _ => new PairRecord
        {
            Id = "faces", Task = "faces", Category = "emotion", Image = "happy_angry_gray.png", CorruptImage = "happy_angry_gray.png",
            Prompt = "Is the left person feeling happy or angry? Answer in one word.",
            CorruptPrompt = "Is the right person feeling happy or angry? Answer in one word.", Answer = "happy", WrongAnswer = "angry",
        },
    };

    private static CorruptionMode ModeOf(string key) => key.EndsWith(".image") ? CorruptionMode.Image : CorruptionMode.Text;

    /// <summary>A backend on its own copy of llava-tiny (the backend owns and disposes its model).</summary>
    private LlavaBackend Backend(PatchingOptions options)
    {
        var backend = (LlavaBackend)new LlavaFamily().LoadBackend(Fixtures.LlavaTiny, options, Path.Combine(Fixtures.LlavaTiny, "pairs.jsonl"));
        _owned.Add(backend);
        return backend;
    }

    private (EncodedSample Sample, IPreparedSample Prepared) Prepare(PatchingBackend backend, string key)
    {
        var sample = backend.Encoder.Encode(Record(key));
        var prepared = backend.Engine.Prepare(sample.Inputs, ModeOf(key));
        _owned.Add(prepared);
        return (sample, prepared);
    }

    /// <summary>The planned units' metrics as a [positions, layers, 4] tensor (token outer, layer inner).</summary>
    private static Tensor Scores(PatchingBackend backend, IPreparedSample prepared, List<PatchUnit> units)
    {
        var results = backend.Engine.Run(prepared, units);
        int positions = units.Select(u => u.Position).Distinct().Count();
        return torch.tensor(results.SelectMany(r => r.Metrics.ToArray()).ToArray()).view(positions, -1, 4);
    }

    private double Compare(SafeTensorsFile f, string table, Tensor actual)
    {
        var expected = f.Read(table);
        Assert.Equal(expected.shape, actual.shape);
        double d = (actual - expected).abs().max().item<float>();
        Assert.True(d <= Tolerance, $"{table}: max abs difference {d:E3}");
        return d;
    }

    private static ExperimentSpec Spec(PositionSelection positions, IReadOnlyList<int>? heads = null) =>
        new() { ModelDir = Fixtures.LlavaTiny, PairsPath = "", Positions = positions, Heads = heads };

    [Theory]
    [MemberData(nameof(Keys))]
    public void EncoderGivesTheInputsTheOriginalRan(string key)
    {
        using var f = SafeTensorsFile.Open(FixturePatching);
        var backend = Backend(new PatchingOptions { Compat = CompatMode.Original });
        var sample = backend.Encoder.Encode(Record(key));
        Assert.Equal(f.Read($"{key}.inputs.clean.input_ids").data<long>().ToArray(), sample.Inputs.CleanIds.data<long>().ToArray());
        var corruptIds = ModeOf(key) == CorruptionMode.Text ? sample.Inputs.CorruptIds! : sample.Inputs.CleanIds;
        Assert.Equal(f.Read($"{key}.inputs.corrupt.input_ids").data<long>().ToArray(), corruptIds.data<long>().ToArray());
        Assert.Equal(0, (sample.Inputs.CleanImage.Pixels - f.Read($"{key}.inputs.clean.pixel_values")).abs().max().item<float>());
        if (ModeOf(key) == CorruptionMode.Image)
            Assert.Equal(0, (sample.Inputs.CorruptImage!.Pixels - f.Read($"{key}.inputs.corrupt.pixel_values")).abs().max().item<float>());
        Assert.Equal(f.Read($"{key}.answer_tokens").data<long>().ToArray(), new[] { sample.Inputs.CorrectId, sample.Inputs.IncorrectId });
        Assert.Equal(7, sample.QuestionStart);               // the original's n_fmt for this tokenizer
        Assert.Equal(4, sample.ImagePosition);
        Assert.Equal(key == "shapes.image" ? 10 : 12, sample.AnswerPosition);   // the original's correct_idx
    }

    [Theory]
    [MemberData(nameof(Keys))]
    public void CompatOriginalReproducesEveryTable(string key)
    {
        using var f = SafeTensorsFile.Open(FixturePatching);
        var backend = Backend(new PatchingOptions { Compat = CompatMode.Original, BatchSize = 5 });
        var (sample, prepared) = Prepare(backend, key);
        double worst = 0;
        int tables = 0;
        foreach (var (kind, site) in new[] { ("layer", "layer"), ("attention_block", "attn"), ("mlp_block", "mlp") })
        {
            // `all` is the original's positions: the question and " ASSISTANT:".
            var units = backend.Plan(backend.Family.Site(site), sample, prepared, Spec(PositionSelection.All));
            Assert.Equal(Enumerable.Range(7, prepared.Positions - 7), units.Select(u => u.Position).Distinct());
            worst = Math.Max(worst, Compare(f, $"{key}.{kind}.scores", Scores(backend, prepared, units)));
            Assert.Equal(f.Read($"{key}.{kind}.low_score").data<float>().ToArray(), prepared.Baseline.Unpatched.ToArray(), new ToleranceComparer(Tolerance));
            tables++;
        }
        for (int h = 0; h < backend.NumHeads; h++)
        {
            // Head-wise `answer` is the original's offset position; `last` its lastpos runs.
            var answer = backend.Plan(backend.Family.Site("heads:attn"), sample, prepared, Spec(PositionSelection.Answer, [h]));
            Assert.Equal(sample.AnswerPosition + 7, answer[0].Position);
            worst = Math.Max(worst, Compare(f, $"{key}.attention_block.head{h}.scores", Scores(backend, prepared, answer)));
            var last = backend.Plan(backend.Family.Site("heads:attn"), sample, prepared, Spec(PositionSelection.Last, [h]));
            worst = Math.Max(worst, Compare(f, $"{key}.attention_block.head{h}.lastpos.scores", Scores(backend, prepared, last)));
            tables += 2;
        }
        output.WriteLine($"{key}: {tables} tables, max abs difference {worst:E2}");
    }

    [Theory]
    [MemberData(nameof(Keys))]
    public void DefaultModeReproducesTheCorrectedTables(string key)
    {
        using var f = SafeTensorsFile.Open(FixturePatching);
        var backend = Backend(new PatchingOptions { BatchSize = 7 });
        var (sample, prepared) = Prepare(backend, key);
        var questionOn = new PositionSelection(PositionKind.List, (Enumerable.Range(7, prepared.Positions - 7).ToList().ToArray()));
        double worst = 0;
        foreach (var (kind, site) in new[] { ("layer", "layer"), ("attention_block", "attn"), ("mlp_block", "mlp") })
        {
            var units = backend.Plan(backend.Family.Site(site), sample, prepared, Spec(questionOn));
            worst = Math.Max(worst, Compare(f, $"{key}.{kind}.corrected.scores", Scores(backend, prepared, units)));
        }
        for (int h = 0; h < backend.NumHeads; h++)
        {
            var answer = backend.Plan(backend.Family.Site("heads:attn"), sample, prepared, Spec(PositionSelection.Answer, [h]));
            Assert.Equal(sample.AnswerPosition, answer[0].Position);
            worst = Math.Max(worst, Compare(f, $"{key}.attention_block.head{h}.corrected.scores", Scores(backend, prepared, answer)));
            // Heads default to the last position, where the answer is read: the lastpos runs.
            var byDefault = backend.Plan(backend.Family.Site("heads:attn"), sample, prepared, Spec(PositionSelection.Default, [h]));
            Assert.Equal(prepared.Positions - 1, byDefault[0].Position);
            worst = Math.Max(worst, Compare(f, $"{key}.attention_block.head{h}.lastpos.scores", Scores(backend, prepared, byDefault)));
        }
        // Restoring the last layer's raw output at the last position restores the answer exactly.
        var restore = backend.Engine.Run(prepared, [new PatchUnit(LlavaSites.Layer, backend.NumLayers - 1, -1, prepared.Positions - 1)]);
        Assert.Equal(1.0, restore[0].Metrics.PatchingEffect, 1e-5);
        output.WriteLine($"{key}: corrected and lastpos tables, max abs difference {worst:E2}");
    }

    [Fact]
    public void BaselinesMatchTheOriginalLogits()
    {
        using var f = SafeTensorsFile.Open(FixturePatching);
        var backend = Backend(new PatchingOptions());
        foreach (var key in new[] { "shapes.image", "faces.text" })
        {
            var (_, prepared) = Prepare(backend, key);
            var sample = (LlavaPreparedSample)prepared;
            var logits = f.Read($"{key}.baseline.logits");
            Assert.True((sample.CleanLogits.flatten() - logits[0]).abs().max().item<float>() <= Tolerance, key);
            Assert.True((sample.CorruptLogits.flatten() - logits[1]).abs().max().item<float>() <= Tolerance, key);
        }
    }

    /// <summary>Every unit of every site at every layer and head, at the first token, both neighbours of
    /// the image, the answer word and the last two tokens (the plain path is slow: not every position).</summary>
    private static List<PatchUnit> SomeUnits(PatchingBackend backend, EncodedSample sample, IPreparedSample prepared)
    {
        var positions = new PositionSelection(PositionKind.List, (new[] { 0, 3, 5, sample.AnswerPosition, prepared.Positions - 2, prepared.Positions - 1 }).ToArray());
        return new LlavaFamily().Sites.SelectMany(site => backend.Plan(site, sample, prepared, Spec(positions))).ToList();
    }

    /// <summary>Every unit of every site at every layer and position (heads all of them).</summary>
    private static List<PatchUnit> AllUnits(PatchingBackend backend, EncodedSample sample, IPreparedSample prepared) =>
        new LlavaFamily().Sites.SelectMany(site => backend.Plan(site, sample, prepared, Spec(PositionSelection.All))).ToList();

    [Theory]
    [InlineData("shapes.image", CompatMode.Default)]
    [InlineData("faces.text", CompatMode.Default)]
    [InlineData("shapes.image", CompatMode.Original)]
    [InlineData("faces.text", CompatMode.Original)]
    public void FastPathEqualsPlainPathUnitForUnit(string key, CompatMode compat)
    {
        var backend = Backend(new PatchingOptions { Compat = compat, BatchSize = 16 });
        var (sample, prepared) = Prepare(backend, key);
        var units = SomeUnits(backend, sample, prepared);
        var fast = backend.Engine.Run(prepared, units);
        var plain = backend.Engine.RunPlain(prepared, units);
        double worst = MaxDifference(fast, plain);
        output.WriteLine($"{key} {compat}: {units.Count} units, fast vs plain max abs difference {worst:E2}");
        Assert.True(worst <= 1e-4, $"fast and plain differ by {worst:E3}");
    }

    private static double MaxDifference(UnitResult[] a, UnitResult[] b)
    {
        double worst = 0;
        for (int i = 0; i < a.Length; i++)
        {
            Assert.Equal(a[i].Unit, b[i].Unit);
            for (int m = 0; m < 4; m++) worst = Math.Max(worst, Math.Abs(a[i].Metrics.ToArray()[m] - b[i].Metrics.ToArray()[m]));
        }
        return worst;
    }

    [Fact]
    public void ResultsDoNotDependOnBatchSize()
    {
        PatchMetrics[] RunWith(int batch, int tokens)
        {
            var backend = Backend(new PatchingOptions { BatchSize = batch, BatchTokens = tokens });
            var (sample, prepared) = Prepare(backend, "faces.text");
            return backend.Engine.Run(prepared, AllUnits(backend, sample, prepared)).Select(r => r.Metrics).ToArray();
        }
        var one = RunWith(1, 100_000);
        foreach (var (batch, tokens) in new[] { (3, 100_000), (16, 40), (1000, 100_000) })
        {
            var other = RunWith(batch, tokens);
            double worst = 0;
            for (int i = 0; i < one.Length; i++)
                for (int m = 0; m < 4; m++)
                {
                    double a = one[i].ToArray()[m], b = other[i].ToArray()[m];
                    worst = Math.Max(worst, Math.Abs(a - b) / Math.Max(1, Math.Abs(a)));
                }
            output.WriteLine($"batch {batch} (tokens {tokens}) vs 1: max relative difference {worst:E2}");
            Assert.True(worst <= 1e-5, $"batch {batch}: max relative difference {worst:E3}");
        }
    }

    [Fact]
    public void NoiseModeIsSeededAndFastEqualsPlain()
    {
        var backend = Backend(new PatchingOptions { NoiseSeed = 7, NoiseMultiple = 3 });
        var sample = backend.Encoder.Encode(Record("shapes.image"));
        using var a = backend.Engine.Prepare(sample.Inputs, CorruptionMode.Noise);
        using var b = backend.Engine.Prepare(sample.Inputs, CorruptionMode.Noise);
        Assert.Equal(a.Baseline, b.Baseline);
        Assert.NotEqual(a.Baseline.ProbClean, a.Baseline.ProbCorrupt);
        var units = new[]
        {
            new PatchUnit(LlavaSites.Mlp, 0, -1, 3), new PatchUnit(LlavaSites.Attn, 1, -1, 12),
            new PatchUnit(BlipSites.AttnHeads, 2, 1, 20), new PatchUnit(LlavaSites.Layer, 1, -1, 5),
        };
        Assert.True(MaxDifference(backend.Engine.Run(a, units), backend.Engine.RunPlain(a, units)) <= 1e-4);
        // The noise is a multiple of the image features' own spread, from the seed alone.
        var noisy = ((LlavaPreparedSample)a).NoisyFeatures!;
        var clean = LlavaTinyModel.Shared.ImageFeatures(sample.Inputs.CleanImage.Pixels);
        double ratio = (noisy - clean).std().item<float>() / clean.std().item<float>();
        Assert.InRange(ratio, 2.5, 3.5);
    }

    [Fact]
    public void BadPositionsAreClearErrors()
    {
        var backend = Backend(new PatchingOptions());
        var (sample, prepared) = Prepare(backend, "shapes.image");
        var beyond = Assert.ThrowsAny<ArgumentException>(() =>
            backend.Plan(backend.Family.Site("mlp"), sample, prepared, Spec(new PositionSelection(PositionKind.List, [3, 40]))));
        Assert.Contains("position 40 is out of range: the prompt has positions 0..20", beyond.Message);
        var image = Assert.ThrowsAny<ArgumentException>(() =>
            backend.Plan(backend.Family.Site("mlp"), sample, prepared, Spec(new PositionSelection(PositionKind.List, [4]))));
        Assert.Contains("<image>", image.Message);
        var direct = Assert.ThrowsAny<ArgumentException>(() => backend.Engine.Run(prepared, [new PatchUnit(LlavaSites.Mlp, 0, -1, 21)]));
        Assert.Contains("position 21 is out of range", direct.Message);
        var cross = Assert.Throws<ArgumentException>(() => backend.Family.Site("cross"));
        Assert.Contains("layer, attn, mlp, heads:attn", cross.Message);
    }

    [Fact]
    public void TextPairsOfDifferentTokenLengthAreRefusedInTheDefaultMode()
    {
        var record = Record("faces.text") with { CorruptPrompt = "Is the person on the right feeling happy or angry? Answer in one word." };
        var backend = Backend(new PatchingOptions());
        var sample = backend.Encoder.Encode(record);
        var e = Assert.Throws<PromptLengthMismatchException>(() => backend.Engine.Prepare(sample.Inputs, CorruptionMode.Text));
        Assert.Contains("clean prompt has 23 tokens", e.Message);
        Assert.Contains("same token length", e.Message);
        // As the original, --compat original runs it and patches the positions both prompts have.
        var original = Backend(new PatchingOptions { Compat = CompatMode.Original });
        using var prepared = original.Engine.Prepare(original.Encoder.Encode(record).Inputs, CorruptionMode.Text);
        Assert.Equal(23, prepared.Positions);
    }

    [Fact]
    public void HeadWiseOriginalPositionBeyondThePromptIsReported()
    {
        // "Is the circle red or blue?" alone: the answer word + n_fmt lies past the last token, where
        // the original raises IndexError (reference README: index 32 out of bounds for size 31).
        var record = Record("shapes.image") with { Prompt = "Is the circle red or blue?" };
        var backend = Backend(new PatchingOptions { Compat = CompatMode.Original });
        var sample = backend.Encoder.Encode(record);
        using var prepared = backend.Engine.Prepare(sample.Inputs, CorruptionMode.Image);
        var e = Assert.ThrowsAny<ArgumentException>(() => backend.Plan(backend.Family.Site("heads:attn"), sample, prepared, Spec(PositionSelection.Answer)));
        Assert.Contains("IndexError", e.Message);
        Assert.NotEmpty(backend.Plan(backend.Family.Site("heads:attn"), sample, prepared, Spec(PositionSelection.Last)));
    }

    private sealed class ToleranceComparer(double tolerance) : IEqualityComparer<float>
    {
        public bool Equals(float x, float y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(float obj) => 0;
    }
}
