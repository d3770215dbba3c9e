using Notice.Core.Attention;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Vlm;
using Notice.Vlm.Blip;
using Notice.Vlm.Text;
using static TorchSharp.torch;

namespace Notice.Core.Families.Blip;

/// <summary>
/// BLIP-VQA (model_type "blip", e.g. Salesforce/blip-vqa-base): patched on its text encoder, whose
/// layers have self-attention, cross-attention to the image and an MLP; the answer is the decoder's
/// first step. Positions are the question's tokens, [CLS] and [SEP] included.
/// </summary>
public sealed class BlipFamily : ModelFamily
{
    public override string Name => "BLIP-VQA";
    public override string ModelType => "blip";
    public override string AnswerLogitsName => "first_step_logits";

    /// <summary>BLIP's sites, in the paper's order (MLP, self-attention, cross-attention).</summary>
    public override IReadOnlyList<PatchSite> Sites => BlipSites.All;

    /// <summary>The paper's BLIP figures: the three module sites and both head sites.</summary>
    public override IReadOnlyList<PatchSite> DefaultSites { get; } =
        [BlipSites.Mlp, BlipSites.Attn, BlipSites.Cross, BlipSites.AttnHeads, BlipSites.CrossHeads];

    public override ModelShape Shape(string folder)
    {
        var config = BlipConfig.Load(Path.Combine(folder, "config.json"));
        return new ModelShape(config.Text.NumHiddenLayers, config.Text.NumAttentionHeads);
    }

    public override IVisionLanguageModel LoadModel(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        BlipVqa.Load(folder, dtype, device);

    public override PatchingBackend LoadBackend(string folder, PatchingOptions options, string manifestPath = "",
        ScalarType dtype = ScalarType.Float32, Device? device = null, Action<string>? warn = null) =>
        new BlipBackend(this, BlipVqa.Load(folder, dtype, device), options, manifestPath, warn);

    public override Func<string, int> PromptPositionCounter(string folder, CompatMode compat)
    {
        var tokenizer = BlipTokenizer.Load(folder);
        return prompt => tokenizer.Encode(prompt).Length;
    }

    public override Func<string, int> WordTokenCounter(string folder)
    {
        var tokenizer = BlipTokenizer.Load(folder);
        return w => tokenizer.Tokenize(w).Length;
    }

    public override IAttentionProbe AttentionProbe(IVisionLanguageModel model, string manifestPath) =>
        new BlipAttentionProbe((BlipVqa)model, manifestPath);
}

/// <summary>A loaded BLIP-VQA with its engine: every question position is patchable.</summary>
public sealed class BlipBackend(BlipFamily family, BlipVqa vqa, PatchingOptions options, string manifestPath = "", Action<string>? warn = null)
    : PatchingBackend
{
    private readonly BlipPatchingEngine _engine = new(vqa.Model, options, family.Sites);

    public override ModelFamily Family => family;
    public override SampleEncoder Encoder { get; } = new BlipSampleEncoder(vqa, manifestPath) { Warn = warn };
    public override IPatchingEngine Engine => _engine;

    protected override PromptPositions Positions(PatchSite site, EncodedSample sample, int positions) =>
        PromptPositions.Every(positions, sample.AnswerPosition);

    public override void Dispose()
    {
        _engine.Dispose();
        vqa.Dispose();
    }
}
