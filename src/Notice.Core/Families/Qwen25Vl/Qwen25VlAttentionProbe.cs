using Notice.Core.Attention;
using Notice.Core.Tasks;
using Notice.Vlm.Hooks;
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
        // Each layer's pattern [1, H, S, S], from the last position to the image tokens: [H, tokens].
        var patches = names.Select(n => PatchAttention.PerHead(hooks.Cache[n][0, .., -1, first..(first + tokens)])).ToArray();
        var resolved = PairsManifest.Resolve(manifestPath, record);
        // A merged token covers 28x28 px of the resized image: the mask resized as the image is.
        var mask = MaskView.Fractions(resolved.Mask, img => vqa.ImageProcessor.Resize(img, resolved.Mask!), rows, columns);
        return new SampleAttention(record.Id, resolved.Image, columns, patches, mask) { Rows = rows };
    }
}
