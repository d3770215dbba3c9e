using Notice.Vlm.Checkpoints;
using Notice.Vlm.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>What <see cref="QwenImageProcessor"/> makes of one or more images.</summary>
/// <param name="PixelValues">[sum of grid_t*grid_h*grid_w, C*temporal*patch*patch] float32: every image's patches, image after image</param>
/// <param name="GridThw">[images, 3] int64: (grid_t, grid_h, grid_w) in patches</param>
public sealed record QwenPixels(Tensor PixelValues, Tensor GridThw) : IDisposable
{
    public void Dispose()
    {
        PixelValues.Dispose();
        GridThw.Dispose();
    }
}

/// <summary>
/// transformers 4.49's Qwen2VLImageProcessor for still images: convert('RGB'), smart_resize to
/// multiples of patch_size * merge_size with min_pixels &lt;= h*w &lt;= max_pixels, PIL resize
/// (bicubic), rescale (float64, then float32), normalise (float32), the single frame repeated to
/// temporal_patch_size frames, and the frames cut into flattened patches in merge-block order.
/// Stages are public so each can be checked on its own.
/// </summary>
public sealed class QwenImageProcessor
{
    public int MinPixels { get; init; } = 56 * 56;
    public int MaxPixels { get; init; } = 28 * 28 * 1280;
    public int PatchSize { get; init; } = 14;
    public int MergeSize { get; init; } = 2;
    public int TemporalPatchSize { get; init; } = 2;
    public bool DoResize { get; init; } = true;
    public PilFilter Resample { get; init; } = PilFilter.Bicubic;
    public RescaleNormalize Pixels { get; init; } = RescaleNormalize.Default;

    /// <summary>The side every resized image is a multiple of (patch_size * merge_size).</summary>
    public int Factor => PatchSize * MergeSize;

    public static QwenImageProcessor FromFile(string path)
    {
        var config = PreprocessorConfig.Load(path);
        if (config.GetString("image_processor_type") is { } type && type is not ("Qwen2VLImageProcessor" or "Qwen2VLImageProcessorFast"))
            throw config.Error("image_processor_type", $"this is a {type} configuration, not Qwen2VLImageProcessor");
        // 4.49 reads min_pixels/max_pixels; size {shortest_edge, longest_edge} carries the same values.
        var size = config.GetSize("size");
        int minPixels = config.GetInt("min_pixels") ?? (size is not null && size.TryGetValue("shortest_edge", out var s) ? s : 56 * 56);
        int maxPixels = config.GetInt("max_pixels") ?? (size is not null && size.TryGetValue("longest_edge", out var l) ? l : 28 * 28 * 1280);
        var p = new QwenImageProcessor
        {
            MinPixels = minPixels,
            MaxPixels = maxPixels,
            PatchSize = config.GetInt("patch_size") ?? 14,
            MergeSize = config.GetInt("merge_size") ?? 2,
            TemporalPatchSize = config.GetInt("temporal_patch_size") ?? 2,
            DoResize = config.GetBool("do_resize", true),
            Resample = config.GetResample("resample", PilFilter.Bicubic),
            Pixels = RescaleNormalize.FromConfig(config),
        };
        if (p.PatchSize <= 0 || p.MergeSize <= 0 || p.TemporalPatchSize <= 0)
            throw config.Error("patch_size", "patch_size, merge_size and temporal_patch_size must be positive");
        if (p.MinPixels <= 0 || p.MaxPixels < p.MinPixels)
            throw config.Error("max_pixels", $"min_pixels {p.MinPixels} and max_pixels {p.MaxPixels} must satisfy 0 < min_pixels <= max_pixels");
        return p;
    }

    /// <summary>
    /// transformers' smart_resize, in Python's float arithmetic: each side rounded (half to even) to
    /// a multiple of <see cref="Factor"/>, then scaled down (floor) or up (ceil) as a whole when the
    /// area is above max_pixels or below min_pixels. An image with a side under the factor or an
    /// aspect ratio over 200 is an error, as in transformers.
    /// </summary>
    public (int Height, int Width) SmartResize(int height, int width, string nameForErrors = "image")
    {
        int factor = Factor;
        if (height < factor || width < factor)
            throw new ImageException(nameForErrors, $"{width}x{height} is too small: Qwen2.5-VL needs both sides at least {factor} px (patch_size * merge_size)");
        if ((double)Math.Max(height, width) / Math.Min(height, width) > 200)
            throw new ImageException(nameForErrors, $"{width}x{height} is too elongated: Qwen2.5-VL takes aspect ratios up to 200");
        // Math.Round rounds half to even, as Python's round does.
        int h = (int)Math.Round((double)height / factor) * factor;
        int w = (int)Math.Round((double)width / factor) * factor;
        if ((long)h * w > MaxPixels)
        {
            double beta = Math.Sqrt((double)height * width / MaxPixels);
            h = (int)Math.Floor(height / beta / factor) * factor;
            w = (int)Math.Floor(width / beta / factor) * factor;
        }
        else if ((long)h * w < MinPixels)
        {
            double beta = Math.Sqrt((double)MinPixels / ((double)height * width));
            h = (int)Math.Ceiling(height * beta / factor) * factor;
            w = (int)Math.Ceiling(width * beta / factor) * factor;
        }
        if (h < factor || w < factor)
            throw new ImageException(nameForErrors, $"{width}x{height} cannot be resized into max_pixels {MaxPixels} with sides that are multiples of {factor}");
        return (h, w);
    }

    /// <summary>The image PIL-resized to its <see cref="SmartResize"/> size (the image itself without do_resize).</summary>
    public RgbImage Resize(RgbImage image, string nameForErrors = "image")
    {
        if (!DoResize) return image;
        var (h, w) = SmartResize(image.Height, image.Width, nameForErrors);
        return PilResize.Resize(image, w, h, Resample);
    }

    /// <summary>
    /// Flattened patches of one resized image: rows in merge-block order (blocks of merge x merge
    /// patches in raster order, the patches of a block in raster order), columns (channel, frame,
    /// py, px); the single frame is repeated temporal_patch_size times. Returns the rows and grid.
    /// </summary>
    public (float[] Rows, int GridT, int GridH, int GridW) Patchify(RgbImage resized, string nameForErrors = "image")
    {
        int p = PatchSize, m = MergeSize, tps = TemporalPatchSize;
        if (resized.Height % (p * m) != 0 || resized.Width % (p * m) != 0)
            throw new ImageException(nameForErrors, $"{resized.Width}x{resized.Height} is not a multiple of {p * m} px on both sides");
        var chw = Pixels.ToChw(resized);
        int height = resized.Height, width = resized.Width, plane = height * width;
        int gridH = height / p, gridW = width / p, cols = 3 * tps * p * p;
        var rows = new float[(long)gridH * gridW * cols];
        long row = 0;
        for (int bh = 0; bh < gridH / m; bh++)
        for (int bw = 0; bw < gridW / m; bw++)
        for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++, row++)
        {
            int top = (bh * m + i) * p, left = (bw * m + j) * p;
            long col = row * cols;
            for (int c = 0; c < 3; c++)
            for (int t = 0; t < tps; t++)   // every frame is the same image
            for (int py = 0; py < p; py++, col += p)
                Array.Copy(chw, c * plane + (top + py) * width + left, rows, col, p);
        }
        return (rows, 1, gridH, gridW);
    }

    /// <summary>pixel_values and image_grid_thw of the images, in order; <paramref name="names"/> (file
    /// names, say) start the error message of an image that cannot be used.</summary>
    public QwenPixels Preprocess(IReadOnlyList<RgbImage> images, IReadOnlyList<string>? names = null)
    {
        if (images.Count == 0) throw new ArgumentException("no images to preprocess", nameof(images));
        string Name(int i) => names is not null && i < names.Count ? names[i] : $"image {i}";
        var parts = images.Select((im, i) => Patchify(Resize(im, Name(i)), Name(i))).ToList();
        int cols = 3 * TemporalPatchSize * PatchSize * PatchSize;
        var all = new float[parts.Sum(x => (long)x.Rows.Length)];
        long offset = 0;
        foreach (var part in parts)
        {
            part.Rows.CopyTo(all, offset);
            offset += part.Rows.Length;
        }
        var grid = parts.SelectMany(x => new long[] { x.GridT, x.GridH, x.GridW }).ToArray();
        return new QwenPixels(torch.tensor(all, new long[] { all.LongLength / cols, cols }), torch.tensor(grid, new long[] { parts.Count, 3 }));
    }

    public QwenPixels Preprocess(RgbImage image) => Preprocess(new[] { image });

    /// <summary>The image files decoded (PIL's convert('RGB')) and preprocessed.</summary>
    public QwenPixels Preprocess(IReadOnlyList<string> imagePaths) => Preprocess(imagePaths.Select(ImageDecoder.Load).ToList(), imagePaths);

    /// <summary>Image tokens of an image with this grid: grid_t * grid_h * grid_w / merge_size^2.</summary>
    public int ImageTokens(int gridT, int gridH, int gridW) => gridT * gridH * gridW / (MergeSize * MergeSize);
}
