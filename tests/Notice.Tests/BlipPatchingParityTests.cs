using Notice.Core.Patching;
using Notice.Vlm.Blip;
using Notice.Vlm.Checkpoints;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>
/// The original NOTICE code's BLIP patching tables (tests/fixtures/blip-tiny/notice_patching.*),
/// reproduced by the fast path in --compat original, and the fast path against the plain one.
/// </summary>
public sealed class BlipPatchingParityTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;
    private static BlipForQuestionAnswering Model => BlipTinyModel.Shared;

    public static TheoryData<string> Keys => new() { "shapes.image", "shapes.text", "faces.image", "faces.text" };

    private static readonly (string Kind, PatchSite Whole, PatchSite? Heads)[] Kinds =
    [
        ("output", BlipSites.Mlp, null),
        ("attention_block", BlipSites.Attn, BlipSites.AttnHeads),
        ("crossattention_block", BlipSites.Cross, BlipSites.CrossHeads),
    ];

    /// <summary>Inputs of a fixture key, taken from the three-row batch the original built.</summary>
    internal static (PatchingInputs Inputs, CorruptionMode Mode) FixtureInputs(SafeTensorsFile f, string key)
    {
        var mode = key.EndsWith(".image") ? CorruptionMode.Image : CorruptionMode.Text;
        var pixels = f.Read($"{key}.inputs.pixel_values");
        var ids = f.Read($"{key}.inputs.input_ids");
        var mask = f.Read($"{key}.inputs.attention_mask");
        var answers = f.Read($"{key}.answer_tokens").data<long>().ToArray();
        Tensor Unpadded(int row) => ids.narrow(0, row, 1).narrow(1, 0, mask[row].sum().item<long>());
        var clean = new ImageInput($"{key}.clean", pixels.narrow(0, 0, 1));
        var corrupt = new ImageInput($"{key}.corrupt", pixels.narrow(0, 1, 1));
        return (new PatchingInputs(clean, corrupt, Unpadded(0), Unpadded(1), answers[0], answers[1]), mode);
    }

    [Theory]
    [MemberData(nameof(Keys))]
    public void CompatOriginalReproducesEveryTable(string key)
    {
        using var f = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        using var engine = new BlipPatchingEngine(Model, new PatchingOptions { Compat = CompatMode.Original, BatchSize = 7 });
        var (inputs, mode) = FixtureInputs(f, key);
        using var sample = engine.Prepare(inputs, mode);
        double worst = 0;
        int tables = 0;
        foreach (var (kind, whole, heads) in Kinds)
        {
            var variants = new List<(string, PatchSite, int)> { (kind, whole, -1) };
            if (heads is not null)
                for (int h = 0; h < engine.NumHeads; h++) variants.Add(($"{kind}.head{h}", heads, h));
            foreach (var (name, site, head) in variants)
            {
                var expected = f.Read($"{key}.{name}.scores");     // [T, L, 4]
                int t = (int)expected.shape[0], layers = (int)expected.shape[1];
                Assert.Equal(t, sample.Positions);
                var units = new List<PatchUnit>();
                for (int p = 0; p < t; p++)
                    for (int l = 0; l < layers; l++) units.Add(new PatchUnit(site, l, head, p));
                var results = engine.Run(sample, units);
                var actual = torch.tensor(results.SelectMany(r => r.Metrics.ToArray()).ToArray()).view(t, layers, 4);
                double d = (actual - expected).abs().max().item<float>();
                worst = Math.Max(worst, d);
                Assert.True(d <= Tolerance, $"{key}.{name}: max abs difference {d:E3}");
                var low = f.Read($"{key}.{name}.low_score").data<float>().ToArray();
                Assert.Equal(low, sample.Baseline.Unpatched.ToArray().Select((v, i) => Math.Abs(v - low[i]) <= Tolerance ? low[i] : v).ToArray());
                tables++;
            }
        }
        output.WriteLine($"{key}: {tables} tables, max abs difference {worst:E2}");
    }

    [Fact]
    public void BaselinesMatchTheOriginalLogits()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        using var engine = new BlipPatchingEngine(Model, new PatchingOptions { Compat = CompatMode.Original });
        foreach (var key in new[] { "shapes.image", "shapes.text", "faces.image", "faces.text" })
        {
            var (inputs, mode) = FixtureInputs(f, key);
            using var sample = engine.Prepare(inputs, mode);
            var logits = f.Read($"{key}.baseline.logits");
            Assert.True((sample.CleanLogits.flatten() - logits[0]).abs().max().item<float>() <= Tolerance, key);
            Assert.True((sample.CorruptLogits.flatten() - logits[1]).abs().max().item<float>() <= Tolerance, key);
        }
    }

    [Fact]
    public void DefaultModeRefusesTextPairsOfDifferentTokenLength()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        using var engine = new BlipPatchingEngine(Model);
        var (inputs, mode) = FixtureInputs(f, "faces.text");
        var e = Assert.Throws<PromptLengthMismatchException>(() => engine.Prepare(inputs, mode));
        Assert.Contains("11 tokens", e.Message);
        Assert.Contains("13", e.Message);
    }

    [Theory]
    [InlineData("shapes.image", CompatMode.Default)]
    [InlineData("shapes.text", CompatMode.Default)]
    [InlineData("faces.text", CompatMode.Original)]
    [InlineData("faces.image", CompatMode.Default)]
    public void FastPathEqualsPlainPathUnitForUnit(string key, CompatMode compat)
    {
        using var f = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        var (inputs, mode) = FixtureInputs(f, key);
        using var engine = new BlipPatchingEngine(Model, new PatchingOptions { Compat = compat });
        using var sample = engine.Prepare(inputs, mode);
        var units = AllUnits(engine, sample.Positions);
        var fast = engine.Run(sample, units);
        var plain = engine.RunPlain(sample, units);
        double worst = 0;
        for (int i = 0; i < units.Count; i++)
        {
            Assert.Equal(fast[i].Unit, plain[i].Unit);
            var a = fast[i].Metrics.ToArray();
            var b = plain[i].Metrics.ToArray();
            for (int m = 0; m < 4; m++) worst = Math.Max(worst, Math.Abs(a[m] - b[m]));
        }
        output.WriteLine($"{key}: {units.Count} units, fast vs plain max abs difference {worst:E2}");
        Assert.True(worst <= 1e-4, $"fast and plain differ by {worst:E3}");
    }

    [Fact]
    public void ResultsDoNotDependOnBatchSize()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        var (inputs, mode) = FixtureInputs(f, "shapes.image");
        PatchMetrics[] RunWith(int batch)
        {
            using var engine = new BlipPatchingEngine(Model, new PatchingOptions { BatchSize = batch });
            using var sample = engine.Prepare(inputs, mode);
            return engine.Run(sample, AllUnits(engine, sample.Positions)).Select(r => r.Metrics).ToArray();
        }
        var one = RunWith(1);
        foreach (var batch in new[] { 3, 16, 1000 })
        {
            var other = RunWith(batch);
            double worst = 0;
            for (int i = 0; i < one.Length; i++)
                for (int m = 0; m < 4; m++)
                {
                    double a = one[i].ToArray()[m], b = other[i].ToArray()[m];
                    worst = Math.Max(worst, Math.Abs(a - b) / Math.Max(1, Math.Abs(a)));
                }
            output.WriteLine($"batch {batch} vs 1: max relative difference {worst:E2}");
            // Batched matrix products may sum in another order: float32 round-off only.
            Assert.True(worst <= 1e-5, $"batch {batch}: max relative difference {worst:E3}");
        }
    }

    [Fact]
    public void NoiseModeIsSeededAndFastEqualsPlain()
    {
        using var f = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        var (inputs, _) = FixtureInputs(f, "shapes.image");
        using var engine = new BlipPatchingEngine(Model, new PatchingOptions { NoiseSeed = 7 });
        using var a = engine.Prepare(inputs, CorruptionMode.Noise);
        using var b = engine.Prepare(inputs, CorruptionMode.Noise);
        Assert.Equal(a.Baseline, b.Baseline);
        Assert.NotEqual(a.Baseline.ProbClean, a.Baseline.ProbCorrupt);
        var units = new[] { new PatchUnit(BlipSites.Cross, 0, -1, 3), new PatchUnit(BlipSites.CrossHeads, 1, 2, 4) };
        var fast = engine.Run(a, units);
        var plain = engine.RunPlain(a, units);
        for (int i = 0; i < units.Length; i++)
            for (int m = 0; m < 4; m++)
                Assert.True(Math.Abs(fast[i].Metrics.ToArray()[m] - plain[i].Metrics.ToArray()[m]) <= 1e-4);
    }

    internal static List<PatchUnit> AllUnits(BlipPatchingEngine engine, int positions)
    {
        var units = new List<PatchUnit>();
        foreach (var site in new BlipFamily().Sites)
            for (int l = 0; l < engine.NumLayers; l++)
                for (int p = 0; p < positions; p++)
                    if (site.PerHead)
                        for (int h = 0; h < engine.NumHeads; h++) units.Add(new PatchUnit(site, l, h, p));
                    else units.Add(new PatchUnit(site, l, -1, p));
        return units;
    }
}
