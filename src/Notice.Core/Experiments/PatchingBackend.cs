using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm;
using Notice.Vlm.Blip;
using Notice.Vlm.Llava;
using Notice.Vlm.Text;
using static TorchSharp.torch;

namespace Notice.Core.Experiments;

/// <summary>
/// What a runner needs of one model family, so that it runs BLIP and LLaVA alike: the loaded model,
/// its sample encoder and patching engine, its sites, and which token positions a selection names in
/// its prompts. <see cref="Load"/> picks the family from config.json (<see cref="VlmModel"/>).
/// </summary>
public abstract class PatchingBackend : IDisposable
{
    /// <summary>Loads a model folder (its family read from config.json by <see cref="VlmModel.Load"/>) with its engine.</summary>
    /// <param name="manifestPath">the pairs manifest, whose folder the records' image paths are relative to</param>
    public static PatchingBackend Load(string modelDir, PatchingOptions options, string manifestPath = "",
        ScalarType dtype = ScalarType.Float32, Device? device = null, Action<string>? warn = null) =>
        For(VlmModel.Load(modelDir, dtype, device), options, manifestPath, warn);

    /// <summary>The backend of a loaded model; it takes ownership of the model.</summary>
    public static PatchingBackend For(IVisionLanguageModel model, PatchingOptions options, string manifestPath = "", Action<string>? warn = null) => model switch
    {
        BlipVqa blip => new BlipBackend(blip, options, manifestPath, warn),
        LlavaVqa llava => new LlavaBackend(llava, options, manifestPath, warn),
        _ => throw new ArgumentException($"no patching engine for {model.GetType().Name}"),
    };

    public abstract VlmArchitecture Architecture { get; }
    public abstract SampleEncoder Encoder { get; }
    public abstract IPatchingEngine Engine { get; }
    public int NumLayers => Engine.NumLayers;
    public int NumHeads => Engine.NumHeads;

    /// <summary>A site of this family by the name users type (names mean per-family things: see <see cref="PatchSite.For"/>).</summary>
    public PatchSite Site(string name) => PatchSite.Parse(name, Architecture);

    /// <summary>The units of one (sample, mode, site); an ArgumentException says why there are none.</summary>
    public List<PatchUnit> Plan(PatchSite site, EncodedSample sample, IPreparedSample prepared, ExperimentSpec spec) =>
        UnitPlanner.Plan(site, NumLayers, NumHeads, Positions(site, sample, prepared.Positions), spec.Layers, spec.Heads, Selection(site, spec.Positions));

    /// <summary>About how many units a record will have for a site, from its prompt alone (for progress).</summary>
    public long EstimateUnits(PairRecord record, PatchSite site, ExperimentSpec spec)
    {
        var selection = Selection(site, spec.Positions);
        long positions = selection.Kind switch
        {
            "all" or "default" => AllPositions(record.Prompt),
            "list" => selection.List!.Count,
            _ => 1,
        };
        long heads = site.PerHead ? spec.Heads?.Count ?? NumHeads : 1;
        return positions * (spec.Layers?.Count ?? NumLayers) * heads;
    }

    /// <summary>How many positions `all` names in a prompt (tokenising only).</summary>
    protected abstract int AllPositions(string prompt);

    /// <summary>The positions of a prepared sample's prompt as this family reads them.</summary>
    protected abstract PromptPositions Positions(PatchSite site, EncodedSample sample, int positions);

    /// <summary>The selection a site gets: `default` resolved per family and site.</summary>
    protected virtual PositionSelection Selection(PatchSite site, PositionSelection requested) =>
        requested.Kind == "default" ? PositionSelection.All : requested;

    public abstract void Dispose();
}

/// <summary>BLIP-VQA: positions are the question's tokens, [CLS] and [SEP] included.</summary>
public sealed class BlipBackend : PatchingBackend
{
    private readonly BlipVqa _vqa;
    private readonly BlipPatchingEngine _engine;

    public BlipBackend(BlipVqa vqa, PatchingOptions options, string manifestPath = "", Action<string>? warn = null)
    {
        _vqa = vqa;
        _engine = new BlipPatchingEngine(vqa.Model, options);
        Encoder = new BlipSampleEncoder(vqa, manifestPath) { Warn = warn };
    }

    public override VlmArchitecture Architecture => VlmArchitecture.Blip;
    public override SampleEncoder Encoder { get; }
    public override IPatchingEngine Engine => _engine;

    protected override int AllPositions(string prompt) => _vqa.Tokenizer.Encode(prompt).Length;

    protected override PromptPositions Positions(PatchSite site, EncodedSample sample, int positions) =>
        PromptPositions.Every(positions, sample.AnswerPosition);

    public override void Dispose()
    {
        _engine.Dispose();
        _vqa.Dispose();
    }
}

/// <summary>
/// LLaVA-1.5: positions are input-id indices of the templated prompt, &lt;image&gt; counted once and
/// never patched itself; head sites default to the last position (the ':' of "ASSISTANT:", where the
/// answer is read). In --compat original, `all` and head-wise `answer` are the original's positions
/// (<see cref="LlavaOriginalCompat"/>).
/// </summary>
public sealed class LlavaBackend : PatchingBackend
{
    private readonly LlavaVqa _vqa;
    private readonly LlavaPatchingEngine _engine;
    private readonly CompatMode _compat;

    public LlavaBackend(LlavaVqa vqa, PatchingOptions options, string manifestPath = "", Action<string>? warn = null)
    {
        _vqa = vqa;
        _compat = options.Compat;
        _engine = new LlavaPatchingEngine(vqa.Model, options);
        Encoder = new LlavaSampleEncoder(vqa, manifestPath, options.Compat) { Warn = warn };
    }

    public override VlmArchitecture Architecture => VlmArchitecture.Llava;
    public override SampleEncoder Encoder { get; }
    public override IPatchingEngine Engine => _engine;

    protected override int AllPositions(string prompt)
    {
        int tokens = _vqa.Tokenizer.Encode(LlavaPrompt.Format(prompt)).Length;
        return _compat == CompatMode.Original ? tokens - _vqa.Tokenizer.Encode(LlavaPrompt.Prefix).Length : tokens - 1;
    }

    protected override PositionSelection Selection(PatchSite site, PositionSelection requested) =>
        requested.Kind == "default" ? (site.PerHead ? PositionSelection.Last : PositionSelection.All) : requested;

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
        _vqa.Dispose();
    }
}
