using SkiaSharp;

namespace Notice.Vlm.Processing;

/// <summary>
/// Reads PNG and JPEG files into <see cref="RgbImage"/>s equal to PIL's
/// <c>Image.open(f).convert('RGB')</c>, the first step of every Hugging Face image processor:
/// grey is replicated to three channels, palettes are expanded, and alpha is dropped WITHOUT
/// compositing, so a transparent pixel keeps its stored colour.
/// </summary>
/// <remarks>
/// Like <c>Image.open</c> (and unlike transformers' <c>load_image</c>) the EXIF orientation is not
/// applied. 16-bit PNGs and CMYK JPEGs decode, but their conversion to 8-bit RGB has not been
/// checked against PIL.
/// </remarks>
public static class ImageDecoder
{
    private const string NotAnImage = "not a readable PNG or JPEG image";

    /// <summary>
    /// The most pixels an image may have: 178,956,970 (2^31 / 4 / 3), PIL's Image.MAX_IMAGE_PIXELS.
    /// It is read from the header, so a decompression bomb (a small file that decodes to gigabytes) is
    /// refused before anything is decoded.
    /// </summary>
    public const long MaxPixels = 178_956_970;

    /// <summary>The largest image file read: 256 MiB. Dataset images are a few MiB; even a PNG at the pixel
    /// limit is rarely over 100 MiB, and its size is checked before the file is opened.</summary>
    public const long MaxFileBytes = 256L << 20;

    /// <summary>Reads and decodes the file at <paramref name="path"/>; errors name the file. Only a regular
    /// file (or a link to one) of at most <see cref="MaxFileBytes"/> is read: a directory, a device such
    /// as /dev/zero, or a FIFO is refused from its metadata, without opening it.</summary>
    public static RgbImage Load(string path)
    {
        var bytes = Checkpoints.InputFiles.ReadAllBytes(path, MaxFileBytes, problem => new ImageException(path, problem));
        return Decode(bytes, path);
    }

    /// <summary>Decodes an encoded PNG or JPEG; <paramref name="nameForErrors"/> starts every error message.</summary>
    public static RgbImage Decode(byte[] bytes, string nameForErrors)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        if (bytes.Length == 0) throw new ImageException(nameForErrors, $"empty file, {NotAnImage}");

        using var codec = SKCodec.Create(new MemoryStream(bytes, writable: false), out var opened);
        if (codec is null)
            throw new ImageException(nameForErrors, opened == SKCodecResult.IncompleteInput ? $"{NotAnImage}: truncated header" : NotAnImage);
        if (codec.EncodedFormat is not (SKEncodedImageFormat.Png or SKEncodedImageFormat.Jpeg))
            throw new ImageException(nameForErrors, $"{NotAnImage}: it is {codec.EncodedFormat}, only PNG and JPEG are supported");

        int width = codec.Info.Width, height = codec.Info.Height;
        if (width <= 0 || height <= 0)
            throw new ImageException(nameForErrors, $"{NotAnImage}: unusable size {width}x{height}");
        long pixels = (long)width * height;
        if (pixels > MaxPixels)
            throw new ImageException(nameForErrors, $"image is {width}x{height} = {pixels} pixels, more than the {MaxPixels} allowed (PIL's MAX_IMAGE_PIXELS; a possible decompression bomb)");
        long rgbaBytes = pixels * 4;
        if (rgbaBytes > Array.MaxLength)
            throw new ImageException(nameForErrors, $"{NotAnImage}: unusable size {width}x{height}");

        // Unpremultiplied RGBA keeps the stored colour of transparent pixels (premultiplying would
        // zero it, unlike PIL). No colour space on the target means Skia applies no colour
        // management (gAMA/iCCP are ignored), as PIL ignores them too.
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[rgbaBytes];
        var decoded = codec.GetPixels(info, rgba);
        if (decoded != SKCodecResult.Success)
        {
            // Skia fills what it could not decode and reports IncompleteInput; PIL raises instead.
            string why = decoded == SKCodecResult.IncompleteInput ? "truncated image data" : $"corrupt image data ({decoded})";
            throw new ImageException(nameForErrors, $"{NotAnImage}: {why}");
        }

        var rgb = new byte[(long)width * height * 3];
        for (long p = 0, n = (long)width * height; p < n; p++)
        {
            rgb[p * 3 + 0] = rgba[p * 4 + 0];
            rgb[p * 3 + 1] = rgba[p * 4 + 1];
            rgb[p * 3 + 2] = rgba[p * 4 + 2];
        }
        return new RgbImage(width, height, rgb);
    }
}
