using Notice.Core.Tasks;
using Notice.Vlm.Processing;

namespace Notice.Core.Attention;

/// <summary>One sample's attention from the token where the answer is read to the image patches:
/// every head's distribution over patches, [layer][head][patch], plus the mask coverage per patch.
/// Patches are in raster order over a grid of <see cref="Rows"/> x Grid (columns); square unless a
/// model keeps the image's aspect ratio (Qwen2.5-VL).</summary>
public sealed record SampleAttention(string Sample, string ImagePath, int Grid, double[][][] Patches, double[]? MaskFractions)
{
    /// <summary>Rows of the patch grid (Grid is its columns); Grid by default.</summary>
    public int Rows { get; init; } = Grid;
}

/// <summary>Reads a model's attention to the image for a manifest record.</summary>
public interface IAttentionProbe
{
    SampleAttention Read(PairRecord record);
}

/// <summary>What probes of every model share: the mask brought to the model's view of the image.</summary>
public static class MaskView
{
    /// <summary>Fraction of each patch the mask covers, the mask processed as the image is
    /// (<paramref name="toModelView"/>: the processor's resize and crop), object = bright pixels; the
    /// patches are a <paramref name="rows"/> x <paramref name="columns"/> grid of square patches
    /// (BLIP's and LLaVA's square grid: rows = columns).</summary>
    public static double[]? Fractions(string? maskPath, Func<RgbImage, RgbImage> toModelView, int rows, int columns)
    {
        if (maskPath is null || !File.Exists(maskPath)) return null;
        var mask = toModelView(ImageDecoder.Load(maskPath));
        if (mask.Width % columns != 0 || mask.Height % rows != 0 || mask.Width / columns != mask.Height / rows)
            throw new InvalidDataException($"{maskPath}: the processed mask ({mask.Width}x{mask.Height}) does not match the image's {columns}x{rows} patch grid; give the mask the image's size");
        var bits = new bool[mask.Width * mask.Height];
        for (int i = 0; i < bits.Length; i++) bits[i] = mask.Pixels[3 * i] + mask.Pixels[3 * i + 1] + mask.Pixels[3 * i + 2] >= 3 * 128;
        return PatchAttention.MaskFractions(bits, mask.Width, rows, columns);
    }
}

