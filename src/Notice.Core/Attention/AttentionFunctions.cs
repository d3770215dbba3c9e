namespace Notice.Core.Attention;

/// <summary>Head measures over samples against the average head (the mean over every layer and head).</summary>
public static class AttentionFunctions
{
    public static IReadOnlyList<HeadAttentionMeasures> Measure(IReadOnlyList<SampleAttention> samples, IReadOnlyList<(int Layer, int Head)> heads, int outlierPatches = 3)
    {
        if (samples.Count == 0) throw new ArgumentException("no samples to measure attention on");
        var sums = heads.ToDictionary(h => h, _ => new double[6]);
        int withMask = 0;
        double objectArea = 0;
        foreach (var s in samples)
        {
            var average = Average(s);
            var outliers = PatchAttention.Outliers(average, outlierPatches);
            double avgMask = s.MaskFractions is null ? 0 : PatchAttention.MaskMass(average, s.MaskFractions);
            double avgOutlier = PatchAttention.OutlierMass(average, outliers);
            double avgEntropy = PatchAttention.Entropy(average);
            if (s.MaskFractions is not null)
            {
                withMask++;
                objectArea += s.MaskFractions.Average();
            }
            foreach (var (layer, head) in heads)
            {
                if (layer >= s.Patches.Length || head >= s.Patches[layer].Length)
                    throw new ArgumentOutOfRangeException(nameof(heads), $"head L{layer}.H{head} does not exist: the model has {s.Patches.Length} layers of {s.Patches[0].Length} heads");
                var a = s.Patches[layer][head];
                var sum = sums[(layer, head)];
                if (s.MaskFractions is not null) { sum[0] += PatchAttention.MaskMass(a, s.MaskFractions); sum[1] += avgMask; }
                sum[2] += PatchAttention.OutlierMass(a, outliers); sum[3] += avgOutlier;
                sum[4] += PatchAttention.Entropy(a); sum[5] += avgEntropy;
            }
        }
        int n = samples.Count;
        return heads.Select(h =>
        {
            var s = sums[h];
            double mask = withMask > 0 ? s[0] / withMask : double.NaN, avgMask = withMask > 0 ? s[1] / withMask : double.NaN;
            return new HeadAttentionMeasures($"L{h.Layer}.H{h.Head}", n, mask, avgMask, s[2] / n, s[3] / n, s[4] / n, s[5] / n,
                withMask > 0 ? objectArea / withMask : double.NaN);
        }).ToList();
    }

    /// <summary>The average head's attention over patches: the mean of every layer's every head.</summary>
    public static double[] Average(SampleAttention s)
    {
        var all = s.Patches.SelectMany(l => l).ToList();
        int p = all[0].Length;
        var avg = new double[p];
        foreach (var a in all) for (int i = 0; i < p; i++) avg[i] += a[i] / all.Count;
        return avg;
    }

    /// <summary>"L3.H0,L5.H3" (or "L3H0").</summary>
    public static IReadOnlyList<(int Layer, int Head)> ParseHeads(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(h =>
        {
            var m = System.Text.RegularExpressions.Regex.Match(h, @"^L(\d+)\.?H(\d+)$", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
            if (!m.Success) throw new ArgumentException($"--heads: '{h}' is not a head like L3.H0");
            return (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value));
        }).ToList();
}
