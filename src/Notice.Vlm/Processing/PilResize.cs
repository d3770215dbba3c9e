namespace Notice.Vlm.Processing;

/// <summary>PIL resampling filters that <see cref="PilResize"/> reproduces; values are PIL's <c>Image.Resampling</c> codes.</summary>
public enum PilFilter
{
    Bilinear = 2,
    Bicubic = 3,
}

/// <summary>
/// PIL's <c>Image.resize((w, h), filter)</c> for 8-bit RGB images, bit for bit (Pillow's
/// ImagingResample). The resample is separable and antialiased: when shrinking, the filter's
/// support is widened by the shrink factor. The horizontal pass runs first and its result is
/// rounded and clipped to an 8-bit image before the vertical pass; a pass whose size does not
/// change is skipped. Weights are fixed point with 22 fractional bits, as in PIL's 8-bit path.
/// </summary>
public static class PilResize
{
    // 32 bits of int accumulator = 8 for the pixel value + 2 spare for filter overshoot + 22.
    private const int PrecisionBits = 32 - 8 - 2;

    /// <summary><c>Image.resize((width, height), Image.BICUBIC)</c>.</summary>
    public static RgbImage Bicubic(RgbImage src, int width, int height) => Resize(src, width, height, PilFilter.Bicubic);

    /// <summary><c>Image.resize((width, height), Image.BILINEAR)</c>.</summary>
    public static RgbImage Bilinear(RgbImage src, int width, int height) => Resize(src, width, height, PilFilter.Bilinear);

    public static RgbImage Resize(RgbImage src, int width, int height, PilFilter filter)
    {
        ArgumentNullException.ThrowIfNull(src);
        if (width <= 0 || height <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), $"target size must be positive, got {width}x{height}");
        var (kernel, support) = filter switch
        {
            PilFilter.Bicubic => ((Func<double, double>)BicubicKernel, 2.0),
            PilFilter.Bilinear => (BilinearKernel, 1.0),
            _ => throw new ArgumentOutOfRangeException(nameof(filter), filter, "unsupported PIL filter"),
        };

        // PIL returns a plain copy when the size is unchanged; the skipped passes give the same.
        var image = src;
        if (width != src.Width)
            image = HorizontalPass(image, Weights.Compute(src.Width, width, kernel, support));
        if (height != src.Height)
            image = VerticalPass(image, Weights.Compute(src.Height, height, kernel, support));
        return ReferenceEquals(image, src) ? new RgbImage(src.Width, src.Height, (byte[])src.Pixels.Clone()) : image;
    }

    /// <summary>Bicubic convolution kernel with a = -0.5 (Keys), as in PIL.</summary>
    private static double BicubicKernel(double x)
    {
        const double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    private static double BilinearKernel(double x)
    {
        if (x < 0.0) x = -x;
        return x < 1.0 ? 1.0 - x : 0.0;
    }

    /// <summary>
    /// For each output index along one axis: the first input index used, how many are used, and
    /// their fixed-point weights (PIL's precompute_coeffs + normalize_coeffs_8bpc).
    /// </summary>
    private sealed class Weights
    {
        public readonly int[] Start;
        public readonly int[] Count;
        public readonly int[][] Fixed;

        private Weights(int outSize)
        {
            Start = new int[outSize]; Count = new int[outSize]; Fixed = new int[outSize][];
        }

        public static Weights Compute(int inSize, int outSize, Func<double, double> kernel, double kernelSupport)
        {
            var w = new Weights(outSize);
            // PIL passes the box edges as floats; for a whole image they are 0 and inSize.
            double scale = (double)(float)inSize / outSize;
            // Shrinking widens the kernel (antialiasing); enlarging keeps it at its own width.
            double filterScale = Math.Max(scale, 1.0);
            double support = kernelSupport * filterScale;
            double invFilterScale = 1.0 / filterScale;
            var taps = new double[(int)Math.Ceiling(support) * 2 + 1];

            for (int xx = 0; xx < outSize; xx++)
            {
                double center = (xx + 0.5) * scale;
                // The casts truncate toward zero, which is what PIL's "(int)(v + 0.5)" rounding does.
                int xmin = Math.Max((int)(center - support + 0.5), 0);
                int xmax = Math.Min((int)(center + support + 0.5), inSize) - xmin;

                double total = 0.0;
                for (int x = 0; x < xmax; x++)
                {
                    taps[x] = kernel((x + xmin - center + 0.5) * invFilterScale);
                    total += taps[x];
                }
                var fixedTaps = new int[xmax];
                for (int x = 0; x < xmax; x++)
                {
                    double k = total != 0.0 ? taps[x] / total : taps[x];
                    // Round half away from zero, then truncate, exactly as PIL converts to fixed point.
                    fixedTaps[x] = k < 0 ? (int)(-0.5 + k * (1 << PrecisionBits)) : (int)(0.5 + k * (1 << PrecisionBits));
                }
                w.Start[xx] = xmin; w.Count[xx] = xmax; w.Fixed[xx] = fixedTaps;
            }
            return w;
        }
    }

    /// <summary>
    /// Accumulator (starting at one half) to byte: PIL shifts right arithmetically (floor) and
    /// clips to 0..255.
    /// </summary>
    private static byte Clip8(int acc)
    {
        int v = acc >> PrecisionBits;
        return (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
    }

    private static RgbImage HorizontalPass(RgbImage src, Weights w)
    {
        int outW = w.Start.Length, h = src.Height, inW = src.Width;
        var dst = new byte[outW * h * 3];
        var s = src.Pixels;
        for (int y = 0; y < h; y++)
        {
            int row = y * inW * 3;
            for (int xx = 0; xx < outW; xx++)
            {
                var k = w.Fixed[xx];
                int start = w.Start[xx];
                // unchecked int arithmetic wraps like PIL's C int accumulators.
                int r = 1 << (PrecisionBits - 1), g = r, b = r;
                for (int x = 0; x < k.Length; x++)
                {
                    int p = row + (start + x) * 3;
                    r += s[p] * k[x];
                    g += s[p + 1] * k[x];
                    b += s[p + 2] * k[x];
                }
                int o = (y * outW + xx) * 3;
                dst[o] = Clip8(r); dst[o + 1] = Clip8(g); dst[o + 2] = Clip8(b);
            }
        }
        return new RgbImage(outW, h, dst);
    }

    private static RgbImage VerticalPass(RgbImage src, Weights w)
    {
        int outH = w.Start.Length, width = src.Width;
        var dst = new byte[width * outH * 3];
        var s = src.Pixels;
        for (int yy = 0; yy < outH; yy++)
        {
            var k = w.Fixed[yy];
            int start = w.Start[yy];
            for (int x = 0; x < width; x++)
            {
                int r = 1 << (PrecisionBits - 1), g = r, b = r;
                for (int y = 0; y < k.Length; y++)
                {
                    int p = ((start + y) * width + x) * 3;
                    r += s[p] * k[y];
                    g += s[p + 1] * k[y];
                    b += s[p + 2] * k[y];
                }
                int o = (yy * width + x) * 3;
                dst[o] = Clip8(r); dst[o + 1] = Clip8(g); dst[o + 2] = Clip8(b);
            }
        }
        return new RgbImage(width, outH, dst);
    }
}
