using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Processing;

/// <summary>
/// The last two steps of a Hugging Face image processor, rescale then normalise, and the layout
/// change from HWC bytes to CHW float32 (the model's <c>pixel_values</c>).
/// </summary>
public sealed record RescaleNormalize(bool DoRescale, double RescaleFactor, bool DoNormalize, double[] Mean, double[] Std)
{
    /// <summary>OPENAI_CLIP_MEAN / OPENAI_CLIP_STD of transformers, the BLIP and CLIP defaults.</summary>
    public static readonly double[] OpenAiClipMean = [0.48145466, 0.4578275, 0.40821073];
    public static readonly double[] OpenAiClipStd = [0.26862954, 0.26130258, 0.27577711];

    /// <summary>transformers' defaults: rescale by 1/255, normalise with the OpenAI CLIP statistics.</summary>
    public static RescaleNormalize Default { get; } = new(true, 1.0 / 255, true, OpenAiClipMean, OpenAiClipStd);

    internal static RescaleNormalize FromConfig(PreprocessorConfig config)
    {
        var r = new RescaleNormalize(
            config.GetBool("do_rescale", Default.DoRescale),
            config.GetDouble("rescale_factor", Default.RescaleFactor),
            config.GetBool("do_normalize", Default.DoNormalize),
            config.GetChannelValues("image_mean", OpenAiClipMean),
            config.GetChannelValues("image_std", OpenAiClipStd));
        for (int c = 0; c < 3; c++)
            if (r.DoNormalize && r.Std[c] == 0) throw config.Error("image_std", "a standard deviation of 0 would divide by zero");
        return r;
    }

    /// <summary>One image as CHW float32 values, computed as transformers computes them with numpy.</summary>
    public float[] ToChw(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int plane = image.Width * image.Height;
        var chw = new float[3 * plane];
        // numpy casts mean/std to the image dtype (float32) and subtracts/divides in float32.
        Span<float> mean = stackalloc float[3], std = stackalloc float[3];
        for (int c = 0; c < 3; c++) { mean[c] = (float)Mean[c]; std[c] = (float)Std[c]; }
        var px = image.Pixels;
        for (int p = 0; p < plane; p++)
        {
            for (int c = 0; c < 3; c++)
            {
                byte x = px[p * 3 + c];
                // transformers rescales in float64 (uint8 -> float64, times the factor) and then
                // casts to float32; a uint8 image that is only normalised is cast to float32 first.
                float v = DoRescale ? (float)(x * RescaleFactor) : x;
                if (DoNormalize) v = (v - mean[c]) / std[c];
                chw[c * plane + p] = v;
            }
        }
        return chw;
    }

    /// <summary>[3, H, W] float32 for one image.</summary>
    public Tensor ToTensor(RgbImage image) => torch.tensor(ToChw(image), new long[] { 3, image.Height, image.Width });

    /// <summary>[B, 3, H, W] float32; every image must already have the same size.</summary>
    public Tensor ToTensor(IReadOnlyList<RgbImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) throw new ArgumentException("no images to preprocess", nameof(images));
        int w = images[0].Width, h = images[0].Height;
        int per = 3 * w * h;
        var all = new float[(long)per * images.Count];
        for (int i = 0; i < images.Count; i++)
        {
            if (images[i].Width != w || images[i].Height != h)
                throw new ArgumentException($"image {i} is {images[i].Width}x{images[i].Height} after preprocessing but image 0 is {w}x{h}; a batch needs one size", nameof(images));
            ToChw(images[i]).CopyTo(all, (long)per * i);
        }
        return torch.tensor(all, new long[] { images.Count, 3, h, w });
    }
}
