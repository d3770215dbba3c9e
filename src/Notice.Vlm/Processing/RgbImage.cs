namespace Notice.Vlm.Processing;

/// <summary>
/// An 8-bit RGB image, rows top to bottom, pixels left to right, 3 bytes per pixel (HWC order):
/// the layout of numpy's <c>np.asarray(pil_image.convert('RGB'))</c>, so stages can be compared
/// byte for byte with the Hugging Face reference arrays.
/// </summary>
public sealed class RgbImage
{
    public int Width { get; }
    public int Height { get; }
    /// <summary>Width * Height * 3 bytes, R G B per pixel.</summary>
    public byte[] Pixels { get; }

    public RgbImage(int width, int height, byte[] pixels)
    {
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"image size must be positive, got {width}x{height}");
        ArgumentNullException.ThrowIfNull(pixels);
        if (pixels.LongLength != (long)width * height * 3)
            throw new ArgumentException($"a {width}x{height} RGB image needs {(long)width * height * 3} bytes, got {pixels.LongLength}", nameof(pixels));
        Width = width; Height = height; Pixels = pixels;
    }

    /// <summary>A blank (black) image of the given size.</summary>
    public static RgbImage Blank(int width, int height) => new(width, height, new byte[checked(width * height * 3)]);

    /// <summary>Channel <paramref name="c"/> (0 = R) of pixel (<paramref name="x"/>, <paramref name="y"/>).</summary>
    public byte this[int x, int y, int c] => Pixels[(y * Width + x) * 3 + c];

    public override string ToString() => $"RgbImage {Width}x{Height}";
}
