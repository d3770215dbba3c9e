using Notice.Vlm.Checkpoints;
using Notice.Vlm.Processing;
using SkiaSharp;
using TorchSharp;
using Xunit.Abstractions;

namespace Notice.Tests;

/// <summary>
/// Image preprocessing against the Hugging Face reference arrays (transformers 4.41 + PIL) stored
/// in each fixture's reference.safetensors: every stage of every image is compared, and the
/// measured differences are written to the test output.
/// </summary>
public sealed class ImageProcessingTests(ITestOutputHelper output)
{
    public static TheoryData<string> BlipImages => ImagesOf(Fixtures.BlipTiny);
    public static TheoryData<string> LlavaImages => ImagesOf(Fixtures.LlavaTiny);

    /// <summary>The image files the reference has arrays for (keys image.&lt;file&gt;.rgb_uint8).</summary>
    private static TheoryData<string> ImagesOf(string fixture)
    {
        var data = new TheoryData<string>();
        foreach (var file in ReferenceImageFiles(fixture)) data.Add(file);
        return data;
    }

    private static List<string> ReferenceImageFiles(string fixture)
    {
        using var reference = SafeTensorsFile.Open(Path.Combine(fixture, "reference.safetensors"));
        return reference.Entries.Keys
            .Where(k => k.StartsWith("image.", StringComparison.Ordinal) && k.EndsWith(".rgb_uint8", StringComparison.Ordinal))
            .Select(k => k["image.".Length..^".rgb_uint8".Length])
            .Order(StringComparer.Ordinal)
            .ToList();
    }

    [Fact]
    public void ReferenceCoversEveryFixtureImage()
    {
        foreach (var fixture in new[] { Fixtures.BlipTiny, Fixtures.LlavaTiny })
        {
            var pngs = Directory.GetFiles(fixture, "*.png").Select(p => Path.GetFileName(p)!).Order(StringComparer.Ordinal).ToList();
            Assert.NotEmpty(pngs);
            Assert.Equal(pngs, ReferenceImageFiles(fixture));
        }
    }

    [Theory]
    [MemberData(nameof(BlipImages))]
    public void BlipMatchesTransformers(string file)
    {
        var processor = BlipImageProcessor.FromFile(Path.Combine(Fixtures.BlipTiny, "preprocessor_config.json"));
        Assert.Equal((32, 32, PilFilter.Bicubic), (processor.Height, processor.Width, processor.Resample));
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "reference.safetensors"));
        string key = $"image.{file}";

        var rgb = ImageDecoder.Load(Path.Combine(Fixtures.BlipTiny, file));
        int rgbDiff = CompareBytes(reference, $"{key}.rgb_uint8", rgb);

        var resized = processor.Resize(rgb);
        int resizeDiff = CompareBytes(reference, $"{key}.resized_uint8", resized);

        // Rescale + normalise alone, from the reference's resized bytes: isolates that stage.
        var refResized = ReadImage(reference, $"{key}.resized_uint8");
        var expected = ReadFloats(reference, $"{key}.pixel_values", [1, 3, 32, 32]);
        float stageDiff = MaxAbsDiff(processor.Pixels.ToChw(refResized), expected);

        using var pixelValues = processor.Preprocess(rgb);
        Assert.Equal(new long[] { 3, 32, 32 }, pixelValues.shape);
        var (endDiff, endDiffUnits) = ComparePixelValues(pixelValues.data<float>().ToArray(), expected, processor.Pixels, 32 * 32);

        output.WriteLine($"blip-tiny/{file} {rgb.Width}x{rgb.Height}: max |diff| rgb {rgbDiff}, resized {resizeDiff} (uint8); "
            + $"pixel_values from reference resize {stageDiff:G9}, end to end {endDiff:G9} (= {endDiffUnits:G6}/255 before normalising)");
        Assert.Equal(0, rgbDiff);
        Assert.True(resizeDiff <= 2, $"resize differs from PIL by {resizeDiff}");
        Assert.True(stageDiff == 0, $"rescale/normalise differs from transformers by {stageDiff}");
    }

    [Theory]
    [MemberData(nameof(LlavaImages))]
    public void ClipMatchesTransformers(string file)
    {
        var processor = ClipImageProcessor.FromFile(Path.Combine(Fixtures.LlavaTiny, "preprocessor_config.json"));
        Assert.Equal((32, 32, 32, true), (processor.ShortestEdge, processor.CropHeight, processor.CropWidth, processor.DoCenterCrop));
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
        string key = $"image.{file}";

        var rgb = ImageDecoder.Load(Path.Combine(Fixtures.LlavaTiny, file));
        int rgbDiff = CompareBytes(reference, $"{key}.rgb_uint8", rgb);

        var resized = processor.Resize(rgb);
        int resizeDiff = CompareBytes(reference, $"{key}.resized_uint8", resized);

        var cropped = processor.CenterCrop(resized);
        int cropDiff = CompareBytes(reference, $"{key}.cropped_uint8", cropped);
        // The crop alone, from the reference's resized bytes.
        int cropStageDiff = MaxAbsDiff(processor.CenterCrop(ReadImage(reference, $"{key}.resized_uint8")).Pixels,
            ReadImage(reference, $"{key}.cropped_uint8").Pixels);

        var expected = ReadFloats(reference, $"{key}.pixel_values", [1, 3, 32, 32]);
        float stageDiff = MaxAbsDiff(processor.Pixels.ToChw(ReadImage(reference, $"{key}.cropped_uint8")), expected);

        using var pixelValues = processor.Preprocess(rgb);
        Assert.Equal(new long[] { 3, 32, 32 }, pixelValues.shape);
        var (endDiff, endDiffUnits) = ComparePixelValues(pixelValues.data<float>().ToArray(), expected, processor.Pixels, 32 * 32);

        output.WriteLine($"llava-tiny/{file} {rgb.Width}x{rgb.Height} -> {resized.Width}x{resized.Height}: max |diff| rgb {rgbDiff}, "
            + $"resized {resizeDiff}, cropped {cropDiff} (crop alone {cropStageDiff}) (uint8); "
            + $"pixel_values from reference crop {stageDiff:G9}, end to end {endDiff:G9} (= {endDiffUnits:G6}/255 before normalising)");
        Assert.Equal(0, rgbDiff);
        Assert.True(resizeDiff <= 2, $"resize differs from PIL by {resizeDiff}");
        Assert.True(cropDiff <= 2, $"crop differs by {cropDiff}");
        Assert.Equal(0, cropStageDiff);
        Assert.True(stageDiff == 0, $"rescale/normalise differs from transformers by {stageDiff}");
    }

    [Fact]
    public void BatchesStackSingleImages()
    {
        var blip = BlipImageProcessor.FromFile(Path.Combine(Fixtures.BlipTiny, "preprocessor_config.json"));
        var clip = ClipImageProcessor.FromFile(Path.Combine(Fixtures.LlavaTiny, "preprocessor_config.json"));
        // Different source sizes and modes: RGB 64x48, L 48x64, RGBA 40x40.
        string[] files = ["angry_happy.png", "happy_face_tall_gray.png", "green_triangle_rgba.png"];
        foreach (var (folder, preprocessOne, preprocessMany) in new (string, Func<RgbImage, torch.Tensor>, Func<IReadOnlyList<RgbImage>, torch.Tensor>)[]
                 { (Fixtures.BlipTiny, blip.Preprocess, blip.Preprocess), (Fixtures.LlavaTiny, clip.Preprocess, clip.Preprocess) })
        {
            var images = files.Select(f => ImageDecoder.Load(Path.Combine(folder, f))).ToList();
            using var batch = preprocessMany(images);
            Assert.Equal(new long[] { 3, 3, 32, 32 }, batch.shape);
            Assert.Equal(torch.ScalarType.Float32, batch.dtype);
            for (int i = 0; i < images.Count; i++)
            {
                using var single = preprocessOne(images[i]);
                using var row = batch[i];
                Assert.Equal(single.data<float>().ToArray(), row.data<float>().ToArray());
            }
        }
    }

    // ---- PIL resize properties that hold for any input ----

    [Fact]
    public void ResizeRunsHorizontalThenVerticalWithAnIntermediateByteImage()
    {
        // PIL rounds to uint8 after the horizontal pass, so a two-step resize (width only, then
        // height only) is bit-identical to the one-step resize; this also exercises the
        // one-dimension paths.
        var src = ImageDecoder.Load(Path.Combine(Fixtures.LlavaTiny, "red_square_wide.png"));
        foreach (var (w, h) in new[] { (71, 32), (32, 32), (100, 20), (13, 50) })
        {
            var direct = PilResize.Bicubic(src, w, h);
            var stepwise = PilResize.Bicubic(PilResize.Bicubic(src, w, src.Height), w, h);
            Assert.Equal((w, h), (direct.Width, direct.Height));
            Assert.Equal(direct.Pixels, stepwise.Pixels);
        }
    }

    [Fact]
    public void ResizeTreatsBothAxesAlike()
    {
        // One-axis resizes: resizing the height of an image equals resizing the width of its transpose.
        var src = ImageDecoder.Load(Path.Combine(Fixtures.BlipTiny, "angry_happy.png"));
        foreach (int n in new[] { 17, 48, 90 })
        {
            var vertical = PilResize.Bicubic(src, src.Width, n);
            var horizontal = PilResize.Bicubic(Transpose(src), n, src.Width);
            Assert.Equal(vertical.Pixels, Transpose(horizontal).Pixels);
        }
    }

    [Fact]
    public void ResizeKeepsUniformColoursAndCopiesAtTheSameSize()
    {
        var uniform = new RgbImage(37, 23, Enumerable.Range(0, 37 * 23).SelectMany(_ => new byte[] { 200, 3, 128 }).ToArray());
        foreach (var filter in new[] { PilFilter.Bicubic, PilFilter.Bilinear })
        {
            var r = PilResize.Resize(uniform, 11, 50, filter);
            Assert.All(Enumerable.Range(0, r.Width * r.Height), p => Assert.Equal((200, 3, 128), (r.Pixels[p * 3], r.Pixels[p * 3 + 1], r.Pixels[p * 3 + 2])));
        }
        var same = PilResize.Bicubic(uniform, 37, 23);
        Assert.NotSame(uniform.Pixels, same.Pixels);
        Assert.Equal(uniform.Pixels, same.Pixels);
    }

    [Fact]
    public void CenterCropPadsWhenTheCropIsLarger()
    {
        // transformers zero-pads to the crop size, with the image centred (odd excess: one more on top/left).
        var src = new RgbImage(2, 1, [1, 2, 3, 4, 5, 6]);
        var crop = new ClipImageProcessor { CropHeight = 2, CropWidth = 3 }.CenterCrop(src);
        Assert.Equal((3, 2), (crop.Width, crop.Height));
        Assert.Equal(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6 }, crop.Pixels);
    }

    [Fact]
    public void DecodesJpeg()
    {
        // No PIL reference for JPEG here: check that colour and greyscale JPEGs decode to RGB
        // close to their source (JPEG is lossy, and colour JPEGs subsample chroma at sharp edges).
        var colour = ImageDecoder.Load(Path.Combine(Fixtures.BlipTiny, "red_circle_blue_square.png"));
        var grey = ImageDecoder.Load(Path.Combine(Fixtures.BlipTiny, "happy_angry_gray.png"));
        foreach (var (source, colorType, bound) in new[] { (colour, SKColorType.Rgba8888, 8.0), (grey, SKColorType.Gray8, 1.0) })
        {
            using var bitmap = new SKBitmap(new SKImageInfo(source.Width, source.Height, colorType, SKAlphaType.Opaque));
            for (int y = 0; y < source.Height; y++)
                for (int x = 0; x < source.Width; x++)
                    bitmap.SetPixel(x, y, new SKColor(source[x, y, 0], source[x, y, 1], source[x, y, 2]));
            using var encoded = bitmap.Encode(SKEncodedImageFormat.Jpeg, 100);
            var jpeg = ImageDecoder.Decode(encoded.ToArray(), "test.jpg");
            Assert.Equal((source.Width, source.Height), (jpeg.Width, jpeg.Height));
            double mean = source.Pixels.Zip(jpeg.Pixels, (a, b) => Math.Abs(a - b)).Average();
            output.WriteLine($"{colorType} JPEG q100 round trip: mean |diff| {mean:F3}");
            Assert.True(mean < bound, $"{colorType}: mean |diff| {mean}");
            if (colorType == SKColorType.Gray8)
                for (int p = 0; p < jpeg.Width * jpeg.Height; p++)
                    Assert.True(jpeg.Pixels[p * 3] == jpeg.Pixels[p * 3 + 1] && jpeg.Pixels[p * 3] == jpeg.Pixels[p * 3 + 2], "grey not replicated");
        }
    }

    // ---- bad input ----

    [Theory]
    [InlineData("text")]
    [InlineData("empty")]
    [InlineData("truncated-header")]
    [InlineData("truncated-data")]
    [InlineData("missing")]
    public void UnreadableImagesNameTheFile(string kind)
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, $"{kind}.png");
        var good = File.ReadAllBytes(Path.Combine(Fixtures.BlipTiny, "angry_happy.png"));
        switch (kind)
        {
            case "text": File.WriteAllText(path, "this is a text file, not a picture\n"); break;
            case "empty": File.WriteAllBytes(path, []); break;
            case "truncated-header": File.WriteAllBytes(path, good[..20]); break;
            case "truncated-data": File.WriteAllBytes(path, good[..(good.Length / 2)]); break;
        }
        var e = Assert.Throws<ImageException>(() => ImageDecoder.Load(path));
        output.WriteLine(e.Message);
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.File);
    }

    [Theory]
    [InlineData("blip", "\"size\": {\"height\": \"32\", \"width\": 32}", "size.height")]
    [InlineData("blip", "\"size\": [32, 32]", "size")]
    [InlineData("blip", "\"do_normalize\": \"yes\"", "do_normalize")]
    [InlineData("blip", "\"image_mean\": [0.5, 0.5]", "image_mean")]
    [InlineData("blip", "\"rescale_factor\": \"1/255\"", "rescale_factor")]
    [InlineData("blip", "\"resample\": 0", "resample")]
    [InlineData("blip", "\"resample\": 3.5", "resample")]
    [InlineData("blip", "\"image_processor_type\": \"CLIPImageProcessor\"", "image_processor_type")]
    [InlineData("clip", "\"crop_size\": \"big\"", "crop_size")]
    [InlineData("clip", "\"size\": {\"shortest_edge\": true}", "size.shortest_edge")]
    [InlineData("clip", "\"do_center_crop\": 1", "do_center_crop")]
    public void BadConfigFieldsNameFileAndField(string processor, string field, string fieldName)
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "preprocessor_config.json");
        File.WriteAllText(path, "{\"do_resize\": true, " + field + "}");
        var e = Assert.Throws<CheckpointException>(() => Load(processor, path));
        output.WriteLine(e.Message);
        Assert.Contains(path, e.Message);
        Assert.Contains($"'{fieldName}'", e.Message);
    }

    [Fact]
    public void InvalidJsonNamesTheFile()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "preprocessor_config.json");
        File.WriteAllText(path, "{\"size\": {\"height\": 32,");
        var e = Assert.Throws<CheckpointException>(() => BlipImageProcessor.FromFile(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void MissingFieldsTakeTransformersDefaults()
    {
        var blip = BlipImageProcessor.FromJson("{}", "empty.json");
        Assert.Equal((true, true, 384, 384, PilFilter.Bicubic), (blip.DoConvertRgb, blip.DoResize, blip.Height, blip.Width, blip.Resample));
        Assert.Equal(RescaleNormalize.Default, blip.Pixels);
        Assert.Equal((true, 1.0 / 255, true), (blip.Pixels.DoRescale, blip.Pixels.RescaleFactor, blip.Pixels.DoNormalize));
        Assert.Equal([0.48145466, 0.4578275, 0.40821073], blip.Pixels.Mean);
        Assert.Equal([0.26862954, 0.26130258, 0.27577711], blip.Pixels.Std);

        var clip = ClipImageProcessor.FromJson("{}", "empty.json");
        Assert.Equal((224, true, 224, 224, PilFilter.Bicubic), (clip.ShortestEdge, clip.DoCenterCrop, clip.CropHeight, clip.CropWidth, clip.Resample));
        Assert.Equal(RescaleNormalize.Default, clip.Pixels);
        // int(224 * 640 / 480) = 298 (truncated), width is the long side.
        Assert.Equal((298, 224), clip.ResizedSize(640, 480));
        Assert.Equal((224, 298), clip.ResizedSize(480, 640));
    }

    private static object Load(string processor, string path) =>
        processor == "blip" ? BlipImageProcessor.FromFile(path) : ClipImageProcessor.FromFile(path);

    // ---- helpers ----

    /// <summary>Asserts the shape of a reference [H, W, 3] uint8 array and returns the max |diff| to <paramref name="actual"/>.</summary>
    private static int CompareBytes(SafeTensorsFile reference, string name, RgbImage actual)
    {
        var expected = ReadImage(reference, name);
        Assert.True((expected.Width, expected.Height) == (actual.Width, actual.Height),
            $"{name}: reference is {expected.Width}x{expected.Height}, ours {actual.Width}x{actual.Height}");
        return MaxAbsDiff(expected.Pixels, actual.Pixels);
    }

    private static RgbImage ReadImage(SafeTensorsFile reference, string name)
    {
        using var t = reference.Read(name);
        Assert.Equal(torch.ScalarType.Byte, t.dtype);
        Assert.True(t.shape is [_, _, 3], $"{name}: shape [{string.Join(", ", t.shape)}]");
        return new RgbImage((int)t.shape[1], (int)t.shape[0], t.data<byte>().ToArray());
    }

    private static float[] ReadFloats(SafeTensorsFile reference, string name, long[] shape)
    {
        using var t = reference.Read(name);
        Assert.Equal(shape, t.shape);
        return t.data<float>().ToArray();
    }

    /// <summary>
    /// Checks pixel_values within 2/255 before normalisation (2/255/std after) and returns the max
    /// |diff| and the same expressed in 1/255 steps of the un-normalised value.
    /// </summary>
    private static (float Diff, double Steps) ComparePixelValues(float[] actual, float[] expected, RescaleNormalize pixels, int plane)
    {
        Assert.Equal(expected.Length, actual.Length);
        float max = 0; double steps = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            float d = Math.Abs(actual[i] - expected[i]);
            double std = pixels.Std[i / plane];
            max = Math.Max(max, d);
            steps = Math.Max(steps, d * std * 255);
            Assert.True(d <= 2 / 255.0 / std + 1e-5, $"pixel_values[{i}] = {actual[i]}, reference {expected[i]}");
        }
        return (max, steps);
    }

    private static int MaxAbsDiff(byte[] a, byte[] b)
    {
        Assert.Equal(a.Length, b.Length);
        int max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    private static float MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    private static RgbImage Transpose(RgbImage src)
    {
        var dst = new byte[src.Pixels.Length];
        for (int y = 0; y < src.Height; y++)
            for (int x = 0; x < src.Width; x++)
                Array.Copy(src.Pixels, (y * src.Width + x) * 3, dst, (x * src.Height + y) * 3, 3);
        return new RgbImage(src.Height, src.Width, dst);
    }

    private sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("notice-image-tests-").FullName;
        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
