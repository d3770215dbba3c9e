using Notice.Core.Attention;
using Notice.Core.Tasks;
using Notice.Vlm.Blip;
using SkiaSharp;

namespace Notice.Tests;

/// <summary>The head-function rule on synthetic attention maps with known labels, and the BLIP probe
/// on generated shapes pairs whose masks give the object.</summary>
public sealed class AttentionFunctionTests
{
    private const int Grid = 4;

    /// <summary>Object at patches 5 and 6; the average head is drawn to outlier patch 15.</summary>
    private static readonly double[] Mask = Enumerable.Range(0, Grid * Grid).Select(i => i is 5 or 6 ? 1.0 : 0.0).ToArray();

    private static double[] Map(params (int Patch, double Weight)[] peaks)
    {
        var a = Enumerable.Repeat(0.1, Grid * Grid).ToArray();
        foreach (var (p, w) in peaks) a[p] += w;
        return PatchAttention.Normalise(a);
    }

    private static SampleAttention Sample(double[] objectHead, double[] suppressor, double[] outlierAvoider, double[] plain)
    {
        // Layer 0 holds the heads under test; layer 1 makes the average head outlier-heavy.
        var background = Map((15, 8.0));
        return new SampleAttention("s", "", Grid, [[objectHead, suppressor, outlierAvoider, plain], [background, background, background, background]], Mask);
    }

    [Fact]
    public void TheRuleLabelsHeadsWithKnownFunctions()
    {
        var s = Sample(
            objectHead: Map((5, 3.0), (6, 3.0)),
            suppressor: Map((0, 2.0), (15, 2.0)),
            outlierAvoider: Map((5, 0.4), (6, 0.4), (1, 1.0), (2, 1.0)),
            plain: Map((15, 4.0), (5, 0.5), (6, 0.5)));
        var m = AttentionFunctions.Measure([s, s], [(0, 0), (0, 1), (0, 2), (0, 3)], outlierPatches: 1);
        Assert.Equal(HeadFunction.ObjectDetection, m[0].Label);
        Assert.Equal(HeadFunction.ObjectSuppression, m[1].Label);
        Assert.Equal(HeadFunction.OutlierSuppression, m[2].Label);
        Assert.Equal(HeadFunction.Unlabelled, m[3].Label);
        Assert.Equal(2, m[0].Samples);
        Assert.Equal(2.0 / 16, m[0].ObjectArea, 1e-12);   // the object's two patches of 16: chance for mask mass
        Assert.True(m[0].Entropy < m[0].AverageEntropy + 1);
    }

    [Fact]
    public void MeasuresAreWhatTheyClaim()
    {
        var uniform = Enumerable.Repeat(1.0 / 16, 16).ToArray();
        Assert.Equal(Math.Log(16), PatchAttention.Entropy(uniform), 1e-12);
        Assert.Equal(2.0 / 16, PatchAttention.MaskMass(uniform, Mask), 1e-12);
        Assert.Equal(new HashSet<int> { 15 }, PatchAttention.Outliers(Map((15, 5.0)), 1));
        var fractions = PatchAttention.MaskFractions(Enumerable.Range(0, 64).Select(i => i % 8 < 4 && i / 8 < 4).ToArray(), width: 8, rows: 2, columns: 2);
        Assert.Equal([1.0, 0.0, 0.0, 0.0], fractions);
    }

    [Fact]
    public void BlipProbeReadsCrossAttentionAtTheAnswerAndTheShapesMasks()
    {
        var dir = Directory.CreateTempSubdirectory("notice-att-").FullName;
        try
        {
            var tokenizer = Notice.Vlm.Text.BlipTokenizer.Load(Fixtures.BlipTiny);
            var report = ShapesTaskGenerator.Generate(dir, [ShapesTaskGenerator.ColorTask], 3, imageSize: 32, seed: 1, tokenCount: w => tokenizer.Tokenize(w).Length);
            using var vqa = BlipVqa.Load(Fixtures.BlipTiny);
            var probe = new BlipAttentionProbe(vqa, report.ManifestPath!);
            var samples = PairsManifest.Read(report.ManifestPath!).Select(probe.Read).ToList();
            Assert.All(samples, s =>
            {
                Assert.Equal(4, s.Grid);                               // 32 / patch 8
                Assert.Equal(2, s.Patches.Length);                     // layers
                Assert.All(s.Patches.SelectMany(l => l), h => Assert.Equal(1.0, h.Sum(), 1e-9));
                Assert.NotNull(s.MaskFractions);
                Assert.Contains(s.MaskFractions!, f => f > 0);
            });
            var measures = AttentionFunctions.Measure(samples, [(0, 0), (1, 3)]);
            Assert.All(measures, m => { Assert.True(m.HasMask); Assert.InRange(m.MaskMass, 0, 1); });
            var png = AttentionOverlay.RenderPng(samples[0].ImagePath, samples[0].Grid, [("L0.H0", samples[0].Patches[0][0]), ("average head", AttentionFunctions.Average(samples[0]))]);
            using var bitmap = SKBitmap.Decode(png);
            Assert.Equal(512, bitmap.Width);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void LlavaProbeReadsSelfAttentionFromTheLastTokenToTheImageFeatures()
    {
        var dir = Directory.CreateTempSubdirectory("notice-latt-").FullName;
        try
        {
            var report = ShapesTaskGenerator.Generate(dir, [ShapesTaskGenerator.ColorTask], 2, imageSize: 48, seed: 2);
            using var vqa = Notice.Vlm.Llava.LlavaVqa.Load(Fixtures.LlavaTiny);
            var probe = new LlavaAttentionProbe(vqa, report.ManifestPath!);
            var s = probe.Read(PairsManifest.Read(report.ManifestPath!)[0]);
            Assert.Equal(4, s.Grid);                                   // 16 image features
            Assert.Equal(3, s.Patches.Length);                         // decoder layers
            Assert.All(s.Patches.SelectMany(l => l), h => Assert.Equal(1.0, h.Sum(), 1e-9));
            Assert.NotNull(s.MaskFractions);
            Assert.Contains(s.MaskFractions!, f => f > 0);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
