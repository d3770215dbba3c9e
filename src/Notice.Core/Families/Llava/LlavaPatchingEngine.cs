using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using Notice.Vlm.Text;
using TorchSharp;
using static TorchSharp.torch;

using Notice.Core.Patching;

namespace Notice.Core.Families.Llava;

/// <summary>
/// NOTICE activation patching on LLaVA's language model, a causal decoder (the fast path is
/// <see cref="CausalPatchingEngine{TSample}"/>'s: patched runs restart from the corrupt stream at the
/// patched layer and position with the corrupt KV cache cut there). What is LLaVA's own: the vision
/// tower once per image; the prompt with &lt;image&gt; merged into N image features; noise on the
/// projected features; the routes of --compat original (<see cref="LlavaOriginalCompat"/>); and the
/// plain path, three full forwards per unit (vision tower included), as the original runs them.
/// </summary>
/// <remarks>Positions are input-id indices, the &lt;image&gt; token counted once: text token i after
/// the image sits at merged position i + N - 1 (N image features). The image token itself is not a
/// patchable position.</remarks>
public sealed class LlavaPatchingEngine : CausalPatchingEngine<LlavaPreparedSample>
{
    private readonly LlavaForConditionalGeneration _model;
    private readonly ImageCache<Tensor> _features;

    /// <param name="sites">the sites it patches (default: LLaVA's)</param>
    public LlavaPatchingEngine(LlavaForConditionalGeneration model, PatchingOptions? options = null, IReadOnlyList<PatchSite>? sites = null) : base(options)
    {
        _model = model;
        Freeze(model);
        Sites = sites ?? LlavaSites.All;
        _features = new ImageCache<Tensor>(Options.ImageCacheSize, t => t.Dispose());
    }

    public override int NumLayers => _model.Config.Text.NumHiddenLayers;
    public override int NumHeads => _model.Config.Text.NumAttentionHeads;
    public override IReadOnlyList<PatchSite> Sites { get; }
    protected override string FamilyName => "LLaVA";
    protected override string StackName => "language model";
    protected override string ImageToken => LlavaPrompt.ImageToken;

    protected override LlavaPreparedSample PrepareRuns(PatchingInputs inputs, CorruptionMode mode, PromptIds ids)
    {
        int image = ImagePosition(ids.Clean), corruptImage = ImagePosition(ids.Corrupt);
        if (corruptImage != image)
            throw new ArgumentException($"the clean prompt has {LlavaPrompt.ImageToken} at position {image} and the corrupt prompt at {corruptImage}; positions would not correspond");

        var cleanFeatures = Features(inputs.CleanImage);                 // [1, N, D]
        Tensor? noisy = null;
        var corruptFeatures = mode switch
        {
            CorruptionMode.Image => Features(inputs.CorruptImage ?? throw new ArgumentException("image corruption needs a corrupt image")),
            CorruptionMode.Noise => noisy = GaussianNoise.Add(cleanFeatures, Options.NoiseMultiple, Options.NoiseSeed),
            _ => cleanFeatures,
        };

        var cleanInputs = _model.MergeInputs(ids.Clean, null, cleanFeatures);           // [1, S, D]
        var (cleanLogits, clean) = CleanRun(cleanInputs.InputsEmbeds, cleanInputs.PositionIds);
        var corruptInputs = _model.MergeInputs(ids.Corrupt, null, corruptFeatures);
        var (corruptLogits, corrupt) = CorruptRun(corruptInputs.InputsEmbeds, corruptInputs.PositionIds);
        var layout = new SequenceLayout(image, (int)cleanFeatures.shape[1], (int)corruptInputs.InputsEmbeds.shape[1]);
        return new LlavaPreparedSample(inputs, mode, ids, clean, cleanLogits, corruptLogits, corrupt, layout, noisy);
    }

    protected override (Tensor Logits, KeyValueCache[]? Cache) Decode(
        Tensor hidden, Tensor positionIds, IReadOnlyList<KeyValueCache>? past, HookContext? hooks, int fromLayer, bool useCache)
    {
        var output = _model.LanguageModel.Model.Forward(hidden, positionIds, null, past, hooks, fromLayer, useCache);
        return (_model.LanguageModel.Logits(output.LastHiddenState.select(1, -1)), output.Cache);
    }

    /// <summary>
    /// --compat original: the original runs the two prompts separately and patches by position; past
    /// the shorter one it raises IndexError and drops the unit, so only the common positions can be patched.
    /// </summary>
    protected override PromptIds OriginalMismatchedPrompts(Tensor clean, Tensor corrupt) =>
        new(clean, corrupt, (int)Math.Min(clean.shape[1], corrupt.shape[1]));

    protected override PromptLengthMismatchException LengthMismatch(int clean, int corrupt) =>
        new(clean, corrupt, "choose a corrupt prompt of the same token length");

    /// <summary>Where a unit's patch goes and where its value comes from, by compatibility mode.</summary>
    protected override PatchRoute Route(PatchSite site, int layer) => Options.Compat == CompatMode.Original
        ? LlavaOriginalCompat.Route(site, layer, NumLayers)
        : PatchRoute.Same(site, layer);

    private int ImagePosition(Tensor ids)
    {
        var found = ids[0].data<long>().ToArray().Select((id, i) => (id, i)).Where(x => x.id == _model.Config.ImageTokenIndex).ToList();
        if (found.Count != 1)
            throw new ArgumentException($"a LLaVA-1.5 prompt holds exactly one {LlavaPrompt.ImageToken} (id {_model.Config.ImageTokenIndex}); this one holds {found.Count}");
        return found[0].i;
    }

    /// <summary>The projected image features [1, N, D] of an image, computed once per image.</summary>
    private Tensor Features(ImageInput image) => _features.GetOrAdd(image.Key, () =>
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var features = _model.ImageFeatures(image.Pixels);
        features.DetachFromDisposeScope();
        return features;
    });

    /// <summary>
    /// The plain path's unit: three full forwards as the original trace_with_patch runs them, each with
    /// the vision tower: clean (recording the patch's value), corrupt, and the corrupt input again with
    /// the value written at the unit's position.
    /// </summary>
    protected override (Tensor Patched, Tensor Clean, Tensor Corrupt) PlainLogits(LlavaPreparedSample sample, PatchUnit u)
    {
        var inputs = sample.Inputs;
        var corruptPixels = sample.Mode == CorruptionMode.Image ? inputs.CorruptImage!.Pixels : inputs.CleanImage.Pixels;
        var route = Route(u.Site, u.Layer);
        long m = sample.SequencePosition(u.Position);

        using var clean = new HookContext().Record(route.Source);
        var cleanLogits = _model.AnswerLogits(inputs.CleanImage.Pixels, sample.CleanIds, null, clean);
        var value = clean.Cache[route.Source][0, m];                      // [D] or [H, Dh]
        if (u.Site.PerHead) value = value[u.Head];                         // [Dh]
        else if (route.TargetIsPerHead && value.dim() == 1) value = value.view(NumHeads, -1);

        using var corrupt = CorruptHooks(sample);
        var corruptLogits = _model.AnswerLogits(corruptPixels, sample.CorruptIds, null, corrupt);

        using var patched = CorruptHooks(sample).Edit(route.Target, x =>
        {
            if (u.Site.PerHead) x[0, m, (long)u.Head] = value;
            else x[0, m] = value;
            return x;
        });
        var patchedLogits = _model.AnswerLogits(corruptPixels, sample.CorruptIds, null, patched);
        return (patchedLogits, cleanLogits, corruptLogits);
    }

    /// <summary>Noise mode's corrupt input: the clean image whose projected features are replaced by
    /// the sample's noisy ones (the same seeded noise the fast path used).</summary>
    private static HookContext CorruptHooks(LlavaPreparedSample sample) =>
        sample.NoisyFeatures is { } noisy ? new HookContext().Edit(HookName.ProjectorOut, _ => noisy.clone()) : new HookContext();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _features.Clear();
    }
}

/// <summary>What a LLaVA sample's clean and corrupt runs leave for its patched runs.</summary>
public sealed class LlavaPreparedSample(
    PatchingInputs inputs, CorruptionMode mode, PromptIds ids, HookContext clean, Tensor cleanLogits, Tensor corruptLogits,
    CausalCorruptRun corrupt, SequenceLayout layout, Tensor? noisyFeatures)
    : CausalPreparedSample(inputs, mode, ids, clean, cleanLogits, corruptLogits, corrupt, layout)
{
    /// <summary>Noise mode: the noisy projected image features of the corrupt run [1, N, D].</summary>
    public Tensor? NoisyFeatures { get; } = noisyFeatures;

    protected override void Dispose(bool disposing)
    {
        if (disposing) NoisyFeatures?.Dispose();
        base.Dispose(disposing);
    }
}
