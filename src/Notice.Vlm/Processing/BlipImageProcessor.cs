using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Notice.Vlm.Processing;

/// <summary>
/// transformers' BlipImageProcessor: resize to a fixed size (size.height x size.width) with PIL,
/// rescale, normalise. Stages, each public so it can be checked on its own:
/// <see cref="ImageDecoder.Load"/> (= convert('RGB')), <see cref="Resize"/>, then
/// <see cref="Pixels"/> (rescale + normalise, CHW float32).
/// </summary>
public sealed class BlipImageProcessor
{
    /// <summary>
    /// Read for completeness. <see cref="RgbImage"/>s are RGB by construction (the decoder always
    /// converts), which is what do_convert_rgb = true gives and a no-op for RGB inputs otherwise.
    /// </summary>
    public bool DoConvertRgb { get; init; } = true;
    public bool DoResize { get; init; } = true;
    public int Height { get; init; } = 384;
    public int Width { get; init; } = 384;
    public PilFilter Resample { get; init; } = PilFilter.Bicubic;
    public RescaleNormalize Pixels { get; init; } = RescaleNormalize.Default;

    /// <summary>Reads a checkpoint's preprocessor_config.json; missing fields take transformers' defaults.</summary>
    public static BlipImageProcessor FromFile(string path) => FromConfig(PreprocessorConfig.Load(path));

    /// <summary>Like <see cref="FromFile"/> for JSON text; <paramref name="nameForErrors"/> starts every error message.</summary>
    public static BlipImageProcessor FromJson(string json, string nameForErrors) => FromConfig(PreprocessorConfig.Parse(json, nameForErrors));

    private static BlipImageProcessor FromConfig(PreprocessorConfig config)
    {
        if (config.GetString("image_processor_type") is { } type && type != "BlipImageProcessor")
            throw config.Error("image_processor_type", $"this is a {type} configuration, not BlipImageProcessor");
        int height = 384, width = 384;
        if (config.GetSize("size") is { } size)
        {
            // A bare integer means a square (transformers' get_size_dict with default_to_square).
            if (size.TryGetValue("", out int square)) height = width = square;
            else if (size.TryGetValue("height", out height) && size.TryGetValue("width", out width)) { }
            else throw config.Error("size", "BlipImageProcessor needs both 'height' and 'width'");
            if (height <= 0 || width <= 0) throw config.Error("size", $"height and width must be positive, found {height}x{width}");
        }
        return new BlipImageProcessor
        {
            DoConvertRgb = config.GetBool("do_convert_rgb", true),
            DoResize = config.GetBool("do_resize", true),
            Height = height,
            Width = width,
            Resample = config.GetResample("resample", PilFilter.Bicubic),
            Pixels = RescaleNormalize.FromConfig(config),
        };
    }

    /// <summary>Writes preprocessor_config.json as transformers' BlipImageProcessor.save_pretrained does
    /// (every field explicit), so BlipProcessor.from_pretrained and <see cref="FromFile"/> read it back.</summary>
    public void Save(string path)
    {
        var o = new JsonObject
        {
            ["do_convert_rgb"] = DoConvertRgb,
            ["do_normalize"] = Pixels.DoNormalize,
            ["do_rescale"] = Pixels.DoRescale,
            ["do_resize"] = DoResize,
            ["image_mean"] = new JsonArray(Pixels.Mean.Select(m => (JsonNode)m).ToArray()),
            ["image_processor_type"] = "BlipImageProcessor",
            ["image_std"] = new JsonArray(Pixels.Std.Select(m => (JsonNode)m).ToArray()),
            ["processor_class"] = "BlipProcessor",
            ["resample"] = (int)Resample,
            ["rescale_factor"] = Pixels.RescaleFactor,
            ["size"] = new JsonObject { ["height"] = Height, ["width"] = Width },
        };
        File.WriteAllText(path, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>PIL <c>image.resize((Width, Height), Resample)</c>, or the image itself when do_resize is false.</summary>
    public RgbImage Resize(RgbImage image) => DoResize ? PilResize.Resize(image, Width, Height, Resample) : image;

    /// <summary>pixel_values of one image: float32 [3, Height, Width].</summary>
    public Tensor Preprocess(RgbImage image) => Pixels.ToTensor(Resize(image));

    /// <summary>pixel_values of a batch: float32 [B, 3, Height, Width].</summary>
    public Tensor Preprocess(IReadOnlyList<RgbImage> images) => Pixels.ToTensor(images.Select(Resize).ToList());
}
