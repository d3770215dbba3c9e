using TorchSharp;

namespace Notice.Core.Attention;

/// <summary>What a head's attention to the image does, judged against the average head (paper §4.3).</summary>
public enum HeadFunction
{
    /// <summary>Attends to the object much more than the average head does.</summary>
    ObjectDetection,
    /// <summary>Attends to the object much less than the average head, without being drawn to outliers.</summary>
    ObjectSuppression,
    /// <summary>Avoids the outlier patches the average head is drawn to.</summary>
    OutlierSuppression,
    /// <summary>None of the above by the rule's margins.</summary>
    Unlabelled,
}

/// <summary>
/// One head's attention to the image patches, averaged over samples, with the average head's for
/// comparison: mass on the object's mask (where a mask exists), mass on the outlier patches (those
/// the average head attends to most), and entropy (nats) of the attention over patches.
/// <see cref="ObjectArea"/> is chance for the mask mass: the object's share of the image's patches,
/// which is what a head attending uniformly would put on it.
/// </summary>
public sealed record HeadAttentionMeasures(string Head, int Samples,
    double MaskMass, double AverageMaskMass, double OutlierMass, double AverageOutlierMass, double Entropy, double AverageEntropy,
    double ObjectArea = double.NaN)
{
    public bool HasMask => !double.IsNaN(MaskMass);

    /// <summary>
    /// The labelling rule, in this order:
    /// 1. object detection: mask mass at least <see cref="Ratio"/> times the average head's;
    /// 2. outlier suppression: outlier mass at most 1/<see cref="Ratio"/> of the average head's (it
    ///    looks past the patches every head is drawn to) and mask mass not below the average head's;
    /// 3. object suppression: mask mass at most 1/<see cref="Ratio"/> of the average head's;
    /// 4. otherwise unlabelled. Without masks, only outlier suppression can be told.
    /// </summary>
    public HeadFunction Label
    {
        get
        {
            if (HasMask && MaskMass >= Ratio * AverageMaskMass) return HeadFunction.ObjectDetection;
            if (OutlierMass <= AverageOutlierMass / Ratio && (!HasMask || MaskMass >= AverageMaskMass)) return HeadFunction.OutlierSuppression;
            if (HasMask && MaskMass <= AverageMaskMass / Ratio) return HeadFunction.ObjectSuppression;
            return HeadFunction.Unlabelled;
        }
    }

    /// <summary>How far from the average head a measure must be to count.</summary>
    public const double Ratio = 1.5;
}

/// <summary>Per-sample measures of one attention distribution over image patches.</summary>
public static class PatchAttention
{
    /// <summary>Normalises attention over the patches alone (the CLS token's share is left out).</summary>
    public static double[] Normalise(IReadOnlyList<double> patchAttention)
    {
        double sum = patchAttention.Sum();
        return patchAttention.Select(a => sum > 0 ? a / sum : 1.0 / patchAttention.Count).ToArray();
    }

    /// <summary>Attention mass on the object: each patch counts by the fraction of it the mask covers.</summary>
    public static double MaskMass(double[] attention, IReadOnlyList<double> maskFraction) =>
        attention.Select((a, i) => a * maskFraction[i]).Sum();

    public static double OutlierMass(double[] attention, IReadOnlySet<int> outliers) =>
        outliers.Sum(i => attention[i]);

    public static double Entropy(double[] attention) =>
        -attention.Where(a => a > 0).Sum(a => a * Math.Log(a));

    /// <summary>The <paramref name="k"/> patches the average head attends to most.</summary>
    public static HashSet<int> Outliers(double[] averageAttention, int k) =>
        averageAttention.Select((a, i) => (a, i)).OrderByDescending(x => x.a).Take(k).Select(x => x.i).ToHashSet();

    /// <summary>Fraction of each patch (row-major grid of <paramref name="rows"/> x <paramref name="columns"/>
    /// square patches, <paramref name="width"/> / columns pixels a side) covered by the mask (true where
    /// the object is), the mask being <paramref name="width"/> pixels wide.</summary>
    public static double[] MaskFractions(bool[] mask, int width, int rows, int columns)
    {
        var fractions = new double[rows * columns];
        int patch = width / columns;
        for (int y = 0; y < rows * patch; y++)
            for (int x = 0; x < columns * patch; x++)
                if (mask[y * width + x]) fractions[(y / patch) * columns + x / patch] += 1.0 / (patch * patch);
        return fractions;
    }

    /// <summary>Each head's attention over the patches, normalised (<see cref="Normalise"/>), from a
    /// hook's [H, P] slice.</summary>
    public static double[][] PerHead(torch.Tensor toPatches)
    {
        var rows = toPatches.to(torch.ScalarType.Float64).cpu();   // [H, P]
        return Enumerable.Range(0, (int)rows.shape[0]).Select(h => Normalise(rows[h].data<double>().ToArray())).ToArray();
    }
}
