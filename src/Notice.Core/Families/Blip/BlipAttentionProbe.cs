using Notice.Core.Attention;
using Notice.Core.Experiments;
using Notice.Core.Tasks;
using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using Notice.Vlm.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Families.Blip;

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
        var patches = names.Select(n => PatchAttention.PerHead(hooks.Cache[n][0, .., position, 1..])).ToArray();   // [H, P] per layer, CLS left out
        int grid = model.Config.Vision.ImageSize / model.Config.Vision.PatchSize;
        var resolved = PairsManifest.Resolve(manifestPath, record);
        var mask = MaskView.Fractions(resolved.Mask, vqa.ImageProcessor.Resize, grid, grid);
        return new SampleAttention(record.Id, resolved.Image, grid, patches, mask);
    }
}
