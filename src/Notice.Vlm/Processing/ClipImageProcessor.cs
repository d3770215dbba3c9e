using static TorchSharp.torch;

namespace Notice.Vlm.Processing;

/// <summary>
/// transformers' CLIPImageProcessor (LLaVA's): resize so that the shortest edge has a given
/// length keeping the aspect ratio, center crop, rescale, normalise. Stages, each public so it can
/// be checked on its own: <see cref="ImageDecoder.Load"/> (= convert('RGB')), <see cref="Resize"/>,
/// <see cref="CenterCrop"/>, then <see cref="Pixels"/> (rescale + normalise, CHW float32).
/// </summary>
public sealed class ClipImageProcessor
{
    /// <summary>See <see cref="BlipImageProcessor.DoConvertRgb"/>: images are always RGB here.</summary>
    public bool DoConvertRgb { get; init; } = true;
    public bool DoResize { get; init; } = true;
    /// <summary>size.shortest_edge; null when the config gives size.height/width (a plain resize) instead.</summary>
    public int? ShortestEdge { get; init; } = 224;
    /// <summary>size.height/width, used when <see cref="ShortestEdge"/> is null.</summary>
    public (int Height, int Width) FixedSize { get; init; }
    public PilFilter Resample { get; init; } = PilFilter.Bicubic;
    public bool DoCenterCrop { get; init; } = true;
    public int CropHeight { get; init; } = 224;
    public int CropWidth { get; init; } = 224;
    public RescaleNormalize Pixels { get; init; } = RescaleNormalize.Default;

    public static ClipImageProcessor FromFile(string path) => FromConfig(PreprocessorConfig.Load(path));

    public static ClipImageProcessor FromJson(string json, string nameForErrors) => FromConfig(PreprocessorConfig.Parse(json, nameForErrors));

    private static ClipImageProcessor FromConfig(PreprocessorConfig config)
    {
        if (config.GetString("image_processor_type") is { } type && type != "CLIPImageProcessor")
            throw config.Error("image_processor_type", $"this is a {type} configuration, not CLIPImageProcessor");

        int? shortest = 224;
        (int, int) fixedSize = default;
        if (config.GetSize("size") is { } size)
        {
            // A bare integer is a shortest edge here (get_size_dict with default_to_square=False).
            if (size.TryGetValue("", out int s) || size.TryGetValue("shortest_edge", out s)) shortest = s;
            else if (size.TryGetValue("height", out int h) && size.TryGetValue("width", out int w)) { shortest = null; fixedSize = (h, w); }
            else throw config.Error("size", "expected 'shortest_edge', or both 'height' and 'width'");
            if (shortest is <= 0 || (shortest is null && (fixedSize.Item1 <= 0 || fixedSize.Item2 <= 0)))
                throw config.Error("size", "sizes must be positive");
        }

        int cropHeight = 224, cropWidth = 224;
        if (config.GetSize("crop_size") is { } crop)
        {
            if (crop.TryGetValue("", out int square)) cropHeight = cropWidth = square;
            else if (crop.TryGetValue("height", out cropHeight) && crop.TryGetValue("width", out cropWidth)) { }
            else throw config.Error("crop_size", "expected both 'height' and 'width'");
            if (cropHeight <= 0 || cropWidth <= 0) throw config.Error("crop_size", $"height and width must be positive, found {cropHeight}x{cropWidth}");
        }

        return new ClipImageProcessor
        {
            DoConvertRgb = config.GetBool("do_convert_rgb", true),
            DoResize = config.GetBool("do_resize", true),
            ShortestEdge = shortest,
            FixedSize = fixedSize,
            Resample = config.GetResample("resample", PilFilter.Bicubic),
            DoCenterCrop = config.GetBool("do_center_crop", true),
            CropHeight = cropHeight,
            CropWidth = cropWidth,
            Pixels = RescaleNormalize.FromConfig(config),
        };
    }

    /// <summary>
    /// The size <see cref="Resize"/> produces: the shortest edge becomes <see cref="ShortestEdge"/>
    /// and the other <c>int(shortest * long / short)</c>, truncated as Python's int() does.
    /// </summary>
    public (int Width, int Height) ResizedSize(int width, int height)
    {
        if (ShortestEdge is not { } target) return (FixedSize.Width, FixedSize.Height);
        int shortSide = Math.Min(width, height), longSide = Math.Max(width, height);
        int newLong = (int)((double)target * longSide / shortSide);
        return width <= height ? (target, newLong) : (newLong, target);
    }

    /// <summary>PIL resize to <see cref="ResizedSize"/>, or the image itself when do_resize is false.</summary>
    public RgbImage Resize(RgbImage image)
    {
        if (!DoResize) return image;
        var (w, h) = ResizedSize(image.Width, image.Height);
        return PilResize.Resize(image, w, h, Resample);
    }

    /// <summary>
    /// transformers' center_crop: top = (h - crop_h) // 2, left = (w - crop_w) // 2. A crop larger
    /// than the image is zero-padded around it first, as transformers does.
    /// </summary>
    public RgbImage CenterCrop(RgbImage image)
    {
        if (!DoCenterCrop) return image;
        int ch = CropHeight, cw = CropWidth, h = image.Height, w = image.Width;
        // Python's // floors; it matters only when the crop is larger than the image.
        int top = FloorDiv(h - ch, 2), left = FloorDiv(w - cw, 2);
        // Offsets of the original image inside the zero-padded canvas (0 when no padding is needed).
        int padTop = (Math.Max(ch, h) - h + 1) / 2, padLeft = (Math.Max(cw, w) - w + 1) / 2;
        top += padTop; left += padLeft;
        var dst = new byte[ch * cw * 3];
        for (int y = 0; y < ch; y++)
        {
            int sy = top + y - padTop;
            if (sy < 0 || sy >= h) continue;
            for (int x = 0; x < cw; x++)
            {
                int sx = left + x - padLeft;
                if (sx < 0 || sx >= w) continue;
                Array.Copy(image.Pixels, (sy * w + sx) * 3, dst, (y * cw + x) * 3, 3);
            }
        }
        return new RgbImage(cw, ch, dst);
    }

    private static int FloorDiv(int a, int b) => (int)Math.Floor((double)a / b);

    private RgbImage ResizeAndCrop(RgbImage image) => CenterCrop(Resize(image));

    /// <summary>pixel_values of one image: float32 [3, CropHeight, CropWidth].</summary>
    public Tensor Preprocess(RgbImage image) => Pixels.ToTensor(ResizeAndCrop(image));

    /// <summary>pixel_values of a batch: float32 [B, 3, CropHeight, CropWidth].</summary>
    public Tensor Preprocess(IReadOnlyList<RgbImage> images) => Pixels.ToTensor(images.Select(ResizeAndCrop).ToList());
}
