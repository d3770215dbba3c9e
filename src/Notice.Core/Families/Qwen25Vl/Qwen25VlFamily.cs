using Notice.Core.Attention;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Vlm;
using Notice.Vlm.Qwen25Vl;
using static TorchSharp.torch;

namespace Notice.Core.Families.Qwen25Vl;

/// <summary>
/// Qwen2.5-VL (model_type "qwen2_5_vl", e.g. Qwen/Qwen2.5-VL-7B-Instruct): patched on its Qwen2
/// language model; the answer is read at the prompt's last position (the `\n` after
/// `&lt;|im_start|&gt;assistant`). Positions are input-id indices as Qwen's processor builds them, every
/// &lt;|image_pad|&gt; expanded to the image's tokens; those image tokens are never patched. Sites
/// and default positions as LLaVA's: modules at every text position, heads at the last position.
/// </summary>
public sealed class Qwen25VlFamily : ModelFamily
{
    public override string Name => "Qwen2.5-VL";
    public override string ModelType => "qwen2_5_vl";
    public override string AnswerLogitsName => "last_position_logits";

    public override IReadOnlyList<PatchSite> Sites => Qwen25VlSites.All;

    public override IReadOnlyList<PatchSite> DefaultSites => Sites;

    public override PositionSelection DefaultPositions(PatchSite site) => site.PerHead ? PositionSelection.Last : PositionSelection.All;

    public override ModelShape Shape(string folder)
    {
        var config = QwenConfig.Load(Path.Combine(folder, "config.json"));
        return new ModelShape(config.NumHiddenLayers, config.NumAttentionHeads);
    }

    public override IVisionLanguageModel LoadModel(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        Qwen25VlVqa.Load(folder, dtype, device);

    public override PatchingBackend LoadBackend(string folder, PatchingOptions options, string manifestPath = "",
        ScalarType dtype = ScalarType.Float32, Device? device = null, Action<string>? warn = null) =>
        new Qwen25VlBackend(this, Qwen25VlVqa.Load(folder, dtype, device), options, manifestPath, warn);

    /// <summary>
    /// The text positions of the templated prompt: every token but the image's. `all` never includes
    /// the image tokens, so the count does not depend on the image's size (which sets how many
    /// &lt;|image_pad|&gt; tokens there are) and is exact from the tokenizer alone.
    /// </summary>
    public override Func<string, int> PromptPositionCounter(string folder, CompatMode compat)
    {
        var tokenizer = QwenTokenizer.Load(folder);
        return prompt =>
        {
            var text = prompt.StartsWith(QwenTokenizer.ImStart, StringComparison.Ordinal) ? prompt : QwenPrompt.Format(prompt);
            return tokenizer.Encode(text).Count(id => id != tokenizer.ImageTokenId);
        };
    }

    /// <summary>A word inside a prompt follows a space, which byte-level BPE keeps on the word (`Ġgreen`).</summary>
    public override Func<string, int> WordTokenCounter(string folder)
    {
        var tokenizer = QwenTokenizer.Load(folder);
        return w => tokenizer.Encode(" " + w).Length;
    }

    public override IAttentionProbe AttentionProbe(IVisionLanguageModel model, string manifestPath) =>
        new Qwen25VlAttentionProbe((Qwen25VlVqa)model, manifestPath);
}

/// <summary>A loaded Qwen2.5-VL with its engine.</summary>
public sealed class Qwen25VlBackend(Qwen25VlFamily family, Qwen25VlVqa vqa, PatchingOptions options, string manifestPath = "", Action<string>? warn = null)
    : PatchingBackend
{
    private readonly Qwen25VlPatchingEngine _engine = new(vqa.Model, options, family.Sites);

    public override ModelFamily Family => family;
    public override SampleEncoder Encoder { get; } = new Qwen25VlSampleEncoder(vqa, manifestPath) { Warn = warn };
    public override IPatchingEngine Engine => _engine;

    /// <summary>Every position but the image tokens; `answer` the answer word's in the question; `last` the final prompt token.</summary>
    protected override PromptPositions Positions(PatchSite site, EncodedSample sample, int positions)
    {
        var image = Enumerable.Range(0, Math.Min(positions, sample.CleanTokens.Length)).Where(i => sample.CleanTokens[i] == QwenTokenizer.ImagePad).ToList();
        int first = image.Count > 0 ? image[0] : -1;
        return new PromptPositions(positions, Enumerable.Range(0, positions).Where(p => p < first || p >= first + image.Count).ToList(), sample.AnswerPosition, positions - 1)
        {
            Excluded = first,
            ExcludedCount = image.Count,
            ExcludedReason = $"is one of the image's {image.Count} {QwenTokenizer.ImagePad} tokens ({first}..{first + image.Count - 1}): image features, not a text position to patch",
        };
    }

    public override void Dispose()
    {
        _engine.Dispose();
        vqa.Dispose();
    }
}
