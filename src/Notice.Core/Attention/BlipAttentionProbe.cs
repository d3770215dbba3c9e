using Notice.Core.Experiments;
using Notice.Core.Tasks;
using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using Notice.Vlm.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Attention;

/// <summary>One sample's attention from the token where the answer is read to the image patches:
/// every head's distribution over patches, [layer][head][patch], plus the mask coverage per patch.</summary>
public sealed record SampleAttention(string Sample, string ImagePath, int Grid, double[][][] Patches, double[]? MaskFractions);

/// <summary>Reads a model's attention to the image for a manifest record.</summary>
public interface IAttentionProbe
{
    SampleAttention Read(PairRecord record);
}

/// <summary>What probes of every model share: the mask brought to the model's view of the image.</summary>
public static class MaskView
{
    /// <summary>Fraction of each patch the mask covers, the mask processed as the image is
    /// (<paramref name="toModelView"/>: the processor's resize and crop), object = bright pixels.</summary>
    public static double[]? Fractions(string? maskPath, Func<RgbImage, RgbImage> toModelView, int grid)
    {
        if (maskPath is null || !File.Exists(maskPath)) return null;
        var mask = toModelView(ImageDecoder.Load(maskPath));
        if (mask.Width != mask.Height) throw new InvalidDataException($"{maskPath}: the processed mask is not square ({mask.Width}x{mask.Height})");
        var bits = new bool[mask.Width * mask.Height];
        for (int i = 0; i < bits.Length; i++) bits[i] = mask.Pixels[3 * i] + mask.Pixels[3 * i + 1] + mask.Pixels[3 * i + 2] >= 3 * 128;
        return PatchAttention.MaskFractions(bits, mask.Width, grid);
    }
}

/// <summary>
/// Reads BLIP's cross-attention on clean inputs (text.blocks.{l}.cross.pattern) at the position of the
/// correct answer's word in the prompt (the paper's choice for BLIP; the last question token when the
/// answer does not occur in the prompt).
/// </summary>
public sealed class BlipAttentionProbe(BlipVqa vqa, string manifestPath) : IAttentionProbe
{
    private readonly BlipSampleEncoder _encoder = new(vqa, manifestPath);

    public SampleAttention Read(PairRecord record)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var sample = _encoder.Encode(record);
        var model = vqa.Model;
        int layers = model.Config.Text.NumHiddenLayers;
        var names = HookName.EveryLayer(BlockHook.CrossPattern, layers);
        using var hooks = new HookContext().Record(names);
        var image = model.EncodeImage(sample.Inputs.CleanImage.Pixels);
        var kv = model.TextEncoder.CrossKeysValues(image);
        model.EncodeQuestion(sample.Inputs.CleanIds, null, kv, hooks);
        int position = sample.AnswerPosition >= 0 ? sample.AnswerPosition : sample.CleanTokens.Length - 2;
        var patches = new double[layers][][];
        for (int l = 0; l < layers; l++)
        {
            var pattern = hooks.Cache[names[l]][0, .., position, 1..].to(ScalarType.Float64).cpu();   // [H, P], CLS left out
            int h = (int)pattern.shape[0];
            patches[l] = Enumerable.Range(0, h).Select(i => PatchAttention.Normalise(pattern[i].data<double>().ToArray())).ToArray();
        }
        int grid = model.Config.Vision.ImageSize / model.Config.Vision.PatchSize;
        var resolved = PairsManifest.Resolve(manifestPath, record);
        var mask = MaskView.Fractions(resolved.Mask, vqa.ImageProcessor.Resize, grid);
        return new SampleAttention(record.Id, resolved.Image, grid, patches, mask);
    }
}
