using Notice.Core.Attention;
using Notice.Core.Experiments;
using Notice.Core.Tasks;
using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Families.Llava;

/// <summary>
/// Reads LLaVA's self-attention on clean inputs (text.blocks.{l}.attn.pattern) from the final prompt
/// token (where the answer is read, the paper's choice for LLaVA) to the image features, which sit at
/// the merged positions of the &lt;image&gt; token; the features form a square grid of patches.
/// </summary>
public sealed class LlavaAttentionProbe(LlavaVqa vqa, string manifestPath) : IAttentionProbe
{
    private readonly LlavaSampleEncoder _encoder = new(vqa, manifestPath);

    public SampleAttention Read(PairRecord record)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var sample = _encoder.Encode(record);
        var model = vqa.Model;
        int features = model.Config.NumImageFeatures;
        bool withCls = model.Config.VisionFeatureSelectStrategy == "full";
        int grid = (int)Math.Round(Math.Sqrt(withCls ? features - 1 : features));
        int layers = model.Config.Text.NumHiddenLayers;
        var names = HookName.EveryLayer(BlockHook.AttnPattern, layers);
        using var hooks = new HookContext().Record(names);
        model.AnswerLogits(sample.Inputs.CleanImage.Pixels, sample.Inputs.CleanIds, null, hooks);
        // The image features replace the <image> token: merged positions ImagePosition .. +features-1 (CLS first under "full").
        int first = sample.ImagePosition + (withCls ? 1 : 0);
        // Each layer's pattern [1, H, S, S], from the last position to the image features: [H, P].
        var patches = names.Select(n => PatchAttention.PerHead(hooks.Cache[n][0, .., -1, first..(first + grid * grid)])).ToArray();
        var resolved = PairsManifest.Resolve(manifestPath, record);
        var mask = MaskView.Fractions(resolved.Mask, img => vqa.ImageProcessor.CenterCrop(vqa.ImageProcessor.Resize(img)), grid, grid);
        return new SampleAttention(record.Id, resolved.Image, grid, patches, mask);
    }
}
