using SkiaSharp;

namespace Notice.Core.Tasks;

/// <summary>
/// Draws the synthetic shapes. Skia only rasterizes each object's coverage (anti-aliased, 8-bit);
/// compositing onto the background and adding noise is done here by hand, so an object changes
/// exactly the pixels its coverage touches and nothing else: the two images of a pair then differ
/// only inside the union of their coverages, which is the mask.
/// </summary>
internal static class ShapeRenderer
{
    /// <summary>Shape names: all start with a consonant, so "a circle" stays grammatical after STR swaps.</summary>
    public static readonly string[] Shapes = ["circle", "square", "triangle", "star", "heart", "cross", "diamond", "pentagon", "hexagon"];

    /// <summary>Colors far enough apart in RGB to be told at a glance on a mid-gray background (no gray among them).</summary>
    public static readonly IReadOnlyDictionary<string, (byte R, byte G, byte B)> Colors = new Dictionary<string, (byte, byte, byte)>
    {
        ["red"] = (220, 30, 30),
        ["blue"] = (30, 70, 225),
        ["green"] = (30, 165, 50),
        ["yellow"] = (245, 225, 30),
        ["purple"] = (135, 40, 175),
        ["orange"] = (250, 135, 20),
        ["white"] = (250, 250, 250),
        ["black"] = (12, 12, 12),
        ["pink"] = (250, 125, 195),
        ["brown"] = (115, 65, 25),
    };

    /// <summary>8-bit coverage of <paramref name="shape"/> centered at (cx, cy), fitting in radius r, on a size x size raster (row-major).</summary>
    public static byte[] Coverage(string shape, float cx, float cy, float r, int size)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(size, size, SKColorType.Alpha8, SKAlphaType.Premul));
        using (var canvas = new SKCanvas(bitmap))
        using (var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill, Color = SKColors.White })
        using (var path = Outline(shape, cx, cy, r))
        {
            canvas.Clear(SKColors.Transparent);
            canvas.DrawPath(path, paint);
        }
        var coverage = new byte[size * size];
        var pixels = bitmap.GetPixelSpan();
        for (var y = 0; y < size; y++)
            pixels.Slice(y * bitmap.RowBytes, size).CopyTo(coverage.AsSpan(y * size, size));
        return coverage;
    }

    /// <summary>Blends a solid color into an RGB buffer with the given coverage: only pixels with coverage &gt; 0 change.</summary>
    public static void Composite(byte[] rgb, byte[] coverage, (byte R, byte G, byte B) color)
    {
        for (var i = 0; i < coverage.Length; i++)
        {
            int a = coverage[i];
            if (a == 0) continue;
            var o = i * 3;
            rgb[o] = Blend(rgb[o], color.R, a);
            rgb[o + 1] = Blend(rgb[o + 1], color.G, a);
            rgb[o + 2] = Blend(rgb[o + 2], color.B, a);
        }
    }

    /// <summary>Adds signed noise to every channel, clamped to 0..255.</summary>
    public static void AddNoise(byte[] rgb, sbyte[] noise)
    {
        for (var i = 0; i < rgb.Length; i++) rgb[i] = (byte)Math.Clamp(rgb[i] + noise[i], 0, 255);
    }

    private static byte Blend(byte background, byte foreground, int alpha) =>
        (byte)((background * (255 - alpha) + foreground * alpha + 127) / 255);

    private static SKPath Outline(string shape, float cx, float cy, float r)
    {
        var path = new SKPath();
        switch (shape)
        {
            case "circle":
                path.AddCircle(cx, cy, 0.9f * r);
                break;
            case "square":
                path.AddRect(new SKRect(cx - 0.8f * r, cy - 0.8f * r, cx + 0.8f * r, cy + 0.8f * r));
                break;
            case "triangle":
                // Circumradius r, shifted down by r/4 so its bounding box is centered.
                Polygon(path, cx, cy + 0.25f * r, r, 3);
                break;
            case "pentagon":
                Polygon(path, cx, cy + 0.1f * r, r, 5);
                break;
            case "hexagon":
                Polygon(path, cx, cy, r, 6);
                break;
            case "diamond":
                // Taller than wide, so it never reads as a rotated square.
                path.MoveTo(cx, cy - r);
                path.LineTo(cx + 0.62f * r, cy);
                path.LineTo(cx, cy + r);
                path.LineTo(cx - 0.62f * r, cy);
                path.Close();
                break;
            case "star":
                Star(path, cx, cy + 0.1f * r, r, 0.42f * r);
                break;
            case "cross":
                float w = 0.3f * r, e = 0.9f * r;
                path.AddRect(new SKRect(cx - w, cy - e, cx + w, cy + e));
                path.AddRect(new SKRect(cx - e, cy - w, cx + e, cy + w));
                path.FillType = SKPathFillType.Winding;
                break;
            case "heart":
                Heart(path, cx, cy, r);
                break;
            default:
                throw new ArgumentException($"unknown shape '{shape}'", nameof(shape));
        }
        return path;
    }

    private static void Polygon(SKPath path, float cx, float cy, float r, int sides)
    {
        for (var k = 0; k < sides; k++)
        {
            var angle = -Math.PI / 2 + 2 * Math.PI * k / sides;
            var (x, y) = (cx + r * (float)Math.Cos(angle), cy + r * (float)Math.Sin(angle));
            if (k == 0) path.MoveTo(x, y); else path.LineTo(x, y);
        }
        path.Close();
    }

    private static void Star(SKPath path, float cx, float cy, float outer, float inner)
    {
        for (var k = 0; k < 10; k++)
        {
            var radius = k % 2 == 0 ? outer : inner;
            var angle = -Math.PI / 2 + Math.PI * k / 5;
            var (x, y) = (cx + radius * (float)Math.Cos(angle), cy + radius * (float)Math.Sin(angle));
            if (k == 0) path.MoveTo(x, y); else path.LineTo(x, y);
        }
        path.Close();
    }

    private static void Heart(SKPath path, float cx, float cy, float r)
    {
        // The classic parametric heart: x in [-16, 16], y in [-17, 12]; scaled to radius r and centered.
        const int steps = 96;
        var scale = r / 16.5f;
        for (var k = 0; k < steps; k++)
        {
            var t = 2 * Math.PI * k / steps;
            var x = 16 * Math.Pow(Math.Sin(t), 3);
            var y = 13 * Math.Cos(t) - 5 * Math.Cos(2 * t) - 2 * Math.Cos(3 * t) - Math.Cos(4 * t);
            var (px, py) = (cx + scale * (float)x, cy - scale * (float)(y + 2.5));
            if (k == 0) path.MoveTo(px, py); else path.LineTo(px, py);
        }
        path.Close();
    }
}
