using Notice.Core.Attention;
using Notice.Core.Tasks;
using Notice.Vlm.Hooks;
using Notice.Vlm.Processing;
using Notice.Vlm.Qwen25Vl;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Families.Qwen25Vl;

/// <summary>
/// Reads Qwen2.5-VL's self-attention on clean inputs (text.blocks.{l}.attn.pattern) from the final
/// prompt token (where the answer is read) to the image tokens. The image tokens are the merged grid
/// (grid_h/merge rows x grid_w/merge columns, raster order, one token per 2x2 patches = 28x28 px of
/// the resized image), so each head's distribution is over that grid, not necessarily square.
/// </summary>
public sealed class Qwen25VlAttentionProbe(Qwen25VlVqa vqa, string manifestPath) : IAttentionProbe
{
    private readonly Qwen25VlSampleEncoder _encoder = new(vqa, manifestPath);

    public SampleAttention Read(PairRecord record)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var sample = _encoder.Encode(record);
        var model = vqa.Model;
        var image = sample.Inputs.CleanImage;
        var grid = image.Grid!.data<long>().ToArray();
        int merge = vqa.ImageProcessor.MergeSize;
        int rows = (int)(grid[1] / merge), columns = (int)(grid[2] / merge), tokens = rows * columns;
        int layers = model.Config.NumHiddenLayers;
        var names = HookName.EveryLayer(BlockHook.AttnPattern, layers);
        using var hooks = new HookContext().Record(names);
        model.AnswerLogits(image.Pixels, image.Grid!, sample.Inputs.CleanIds, null, hooks);
        int first = sample.ImagePosition;
        var patches = new double[layers][][];
        for (int l = 0; l < layers; l++)
        {
            var pattern = hooks.Cache[names[l]];   // [1, H, S, S]
            var toImage = pattern[0, .., -1, first..(first + tokens)].to(ScalarType.Float64).cpu();   // [H, tokens]
            int h = (int)toImage.shape[0];
            patches[l] = Enumerable.Range(0, h).Select(i => PatchAttention.Normalise(toImage[i].data<double>().ToArray())).ToArray();
        }
        var resolved = PairsManifest.Resolve(manifestPath, record);
        return new SampleAttention(record.Id, resolved.Image, columns, patches, MaskFractions(resolved.Mask, rows, columns)) { Rows = rows };
    }

    /// <summary>Fraction of each merged unit (28x28 px of the resized image) the mask covers, the mask
    /// resized as the image is; object = bright pixels.</summary>
    private double[]? MaskFractions(string? maskPath, int rows, int columns)
    {
        if (maskPath is null || !File.Exists(maskPath)) return null;
        var mask = vqa.ImageProcessor.Resize(ImageDecoder.Load(maskPath), maskPath);
        if (mask.Width % columns != 0 || mask.Height % rows != 0 || mask.Width / columns != mask.Height / rows)
            throw new InvalidDataException($"{maskPath}: the resized mask ({mask.Width}x{mask.Height}) does not match the image's {columns}x{rows} token grid; give the mask the image's size");
        int unit = mask.Width / columns;
        var fractions = new double[rows * columns];
        for (int y = 0; y < mask.Height; y++)
            for (int x = 0; x < mask.Width; x++)
            {
                int i = 3 * (y * mask.Width + x);
                if (mask.Pixels[i] + mask.Pixels[i + 1] + mask.Pixels[i + 2] >= 3 * 128)
                    fractions[(y / unit) * columns + x / unit] += 1.0 / (unit * unit);
            }
        return fractions;
    }
}
