using Notice.Vlm.Processing;
using SkiaSharp;

namespace Notice.Core.Attention;

/// <summary>
/// A sample image with one head's attention over its patches laid on top (blue, opacity by share of
/// attention), next to the average head's, each titled: the paper's Figures 6-7.
/// </summary>
public static class AttentionOverlay
{
    private const int Panel = 256, Caption = 28;

    /// <param name="grid">the patch grid's columns</param>
    /// <param name="rows">its rows; 0: as many as columns</param>
    public static byte[] RenderPng(string imagePath, int grid, IReadOnlyList<(string Title, double[] Attention)> panels, int rows = 0)
    {
        var image = ImageDecoder.Load(imagePath);
        using var surface = SKSurface.Create(new SKImageInfo(Panel * panels.Count, Panel + Caption));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var bitmap = ToBitmap(image);
        using var picture = SKImage.FromBitmap(bitmap);
        using var font = new SKFont(SKTypeface.Default, 14);
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        for (int k = 0; k < panels.Count; k++)
        {
            var (title, attention) = panels[k];
            var area = new SKRect(k * Panel, Caption, (k + 1) * Panel, Caption + Panel);
            canvas.DrawImage(picture, area, new SKSamplingOptions(SKFilterMode.Linear));
            double max = attention.Max();
            float cell = Panel / (float)grid, cellHeight = Panel / (float)(rows > 0 ? rows : grid);
            for (int i = 0; i < attention.Length; i++)
            {
                byte alpha = (byte)(max > 0 ? 200 * attention[i] / max : 0);
                using var paint = new SKPaint { Color = new SKColor(20, 90, 255, alpha) };
                canvas.DrawRect(area.Left + (i % grid) * cell, area.Top + (i / grid) * cellHeight, cell, cellHeight, paint);
            }
            canvas.DrawText(title, area.Left + 6, 19, SKTextAlign.Left, font, text);
        }
        using var snapshot = surface.Snapshot();
        using var data = snapshot.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    private static SKBitmap ToBitmap(RgbImage image)
    {
        var bitmap = new SKBitmap(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < image.Width; x++)
                bitmap.SetPixel(x, y, new SKColor(image[x, y, 0], image[x, y, 1], image[x, y, 2]));
        return bitmap;
    }
}
