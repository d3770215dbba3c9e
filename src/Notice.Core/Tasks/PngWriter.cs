using System.Runtime.InteropServices;
using SkiaSharp;

namespace Notice.Core.Tasks;

/// <summary>PNG encoding of raw pixel buffers, for the images the task preparers write themselves.</summary>
internal static class PngWriter
{
    // Fast zlib settings: noisy images barely compress anyway, and this keeps thousands of pairs in seconds.
    private static readonly SKPngEncoderOptions Options = new(SKPngEncoderFilterFlags.Sub, zLibLevel: 1);

    /// <summary>PNG bytes of a width x height RGB buffer (3 bytes a pixel, row-major).</summary>
    public static byte[] EncodeRgb(byte[] rgb, int width, int height)
    {
        var rgba = new byte[width * height * 4];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            rgba[j] = rgb[i];
            rgba[j + 1] = rgb[i + 1];
            rgba[j + 2] = rgb[i + 2];
            rgba[j + 3] = 255;
        }
        return Encode(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque), rgba, width * 4);
    }

    public static byte[] EncodeRgb(byte[] rgb, int size) => EncodeRgb(rgb, size, size);

    /// <summary>PNG bytes of a width x height 8-bit grayscale buffer.</summary>
    public static byte[] EncodeGray(byte[] gray, int width, int height) =>
        Encode(new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque), gray, width);

    public static byte[] EncodeGray(byte[] gray, int size) => EncodeGray(gray, size, size);

    private static byte[] Encode(SKImageInfo info, byte[] pixels, int rowBytes)
    {
        using var bitmap = new SKBitmap(info);
        var target = bitmap.GetPixels();
        for (var y = 0; y < info.Height; y++)
            Marshal.Copy(pixels, y * rowBytes, target + y * bitmap.RowBytes, rowBytes);
        using var pixmap = bitmap.PeekPixels();
        using var data = pixmap.Encode(Options) ?? throw new InvalidOperationException("PNG encoding failed");
        return data.ToArray();
    }
}
