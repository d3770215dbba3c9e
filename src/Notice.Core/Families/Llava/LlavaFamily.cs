using Notice.Core.Attention;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Vlm;
using Notice.Vlm.Llava;
using Notice.Vlm.Text;
using static TorchSharp.torch;

namespace Notice.Core.Families.Llava;

/// <summary>
/// LLaVA-1.5 (model_type "llava", e.g. llava-hf/llava-1.5-7b-hf): patched on its LLaMA language
/// model; the answer is read at the prompt's last position. Positions are input-id indices of the
/// templated prompt, &lt;image&gt; counted once and never patched itself; head sites default to the
/// last position (the ':' of "ASSISTANT:", where the answer is read). In --compat original, `all`
/// and head-wise `answer` are the original's positions (<see cref="LlavaOriginalCompat"/>).
/// </summary>
public sealed class LlavaFamily : ModelFamily
{
    public override string Name => "LLaVA-1.5";
    public override string ModelType => "llava";
    public override string AnswerLogitsName => "last_position_logits";

    /// <summary>LLaVA's sites; its head site is one head's slice of attn.z, before o_proj.</summary>
    public override IReadOnlyList<PatchSite> Sites => LlavaSites.All;

    public override IReadOnlyList<PatchSite> DefaultSites => Sites;

    public override PositionSelection DefaultPositions(PatchSite site) => site.PerHead ? PositionSelection.Last : PositionSelection.All;

    public override ModelShape Shape(string folder)
    {
        var config = LlavaConfig.Load(Path.Combine(folder, "config.json"));
        return new ModelShape(config.Text.NumHiddenLayers, config.Text.NumAttentionHeads);
    }

    public override IVisionLanguageModel LoadModel(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        LlavaVqa.Load(folder, dtype, device);

    public override PatchingBackend LoadBackend(string folder, PatchingOptions options, string manifestPath = "",
        ScalarType dtype = ScalarType.Float32, Device? device = null, Action<string>? warn = null) =>
        new LlavaBackend(this, LlavaVqa.Load(folder, dtype, device), options, manifestPath, warn);

    /// <summary>Text tokens with &lt;image&gt; counted once and never patched; the original patches from the question on.</summary>
    public override Func<string, int> PromptPositionCounter(string folder, CompatMode compat)
    {
        var tokenizer = LlamaTokenizer.Load(folder);
        int skipped = compat == CompatMode.Original ? tokenizer.Encode(LlavaPrompt.Prefix).Length : 1;
        return prompt => tokenizer.Encode(LlavaPrompt.Format(prompt)).Length - skipped;
    }

    /// <summary>A word inside a prompt follows a space: its pieces counted with that leading space.</summary>
    public override Func<string, int> WordTokenCounter(string folder)
    {
        var tokenizer = LlamaTokenizer.Load(folder);
        int space = tokenizer.Tokenize(" ").Length;
        return w => tokenizer.Tokenize(" " + w).Length - space;
    }

    public override IAttentionProbe AttentionProbe(IVisionLanguageModel model, string manifestPath) =>
        new LlavaAttentionProbe((LlavaVqa)model, manifestPath);
}

/// <summary>A loaded LLaVA-1.5 with its engine.</summary>
public sealed class LlavaBackend(LlavaFamily family, LlavaVqa vqa, PatchingOptions options, string manifestPath = "", Action<string>? warn = null)
    : PatchingBackend
{
    private readonly LlavaPatchingEngine _engine = new(vqa.Model, options, family.Sites);
    private readonly CompatMode _compat = options.Compat;

    public override ModelFamily Family => family;
    public override SampleEncoder Encoder { get; } = new LlavaSampleEncoder(vqa, manifestPath, options.Compat) { Warn = warn };
    public override IPatchingEngine Engine => _engine;

    protected override PromptPositions Positions(PatchSite site, EncodedSample sample, int positions)
    {
        bool original = _compat == CompatMode.Original;
        var all = original
            ? LlavaOriginalCompat.ModuleWisePositions(sample.QuestionStart, positions)
            : Enumerable.Range(0, positions).Where(p => p != sample.ImagePosition).ToList();
        int answer = sample.AnswerPosition;
        string? problem = null;
        if (original && site.PerHead && answer >= 0)
        {
            int shifted = LlavaOriginalCompat.HeadWisePosition(answer, sample.QuestionStart);
            if (shifted >= positions)
                problem = $"--compat original patches heads at the answer word's position + {sample.QuestionStart} = {shifted} (the original's offset), " +
                          $"beyond the prompt's last position {positions - 1}; the original raises IndexError there and drops these units";
            answer = shifted < positions ? shifted : -1;
        }
        var prompt = new PromptPositions(positions, all, answer, positions - 1)
        {
            Excluded = sample.ImagePosition,
            ExcludedReason = $"is the {LlavaPrompt.ImageToken} token: its image features are not a text position to patch",
        };
        return problem is null ? prompt : prompt with { AnswerProblem = problem };
    }

    public override void Dispose()
    {
        _engine.Dispose();
        vqa.Dispose();
    }
}
