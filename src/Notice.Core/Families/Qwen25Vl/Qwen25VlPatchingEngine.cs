using Notice.Core.Patching;
using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using Notice.Vlm.Qwen25Vl;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Families.Qwen25Vl;

/// <summary>
/// NOTICE activation patching on Qwen2.5-VL's language model (a Qwen2 decoder with M-RoPE). The fast
/// path is <see cref="CausalPatchingEngine{TSample}"/>'s: patched runs restart from the corrupt stream
/// at the patched layer and position, with the corrupt KV cache cut there and the corrupt run's
/// [3, 1, S] position ids narrowed to the recomputed tail. What is Qwen's own: the vision tower once
/// per image (with its grid); the prompt's expanded &lt;|image_pad|&gt; tokens replaced by the image
/// features; noise on those features; and the plain path, three full forwards per unit (vision tower
/// included).
/// </summary>
/// <remarks>Positions are input-id indices as Qwen2_5_VLProcessor builds them, every &lt;|image_pad|&gt;
/// expanded (the fixture's positions): the sequence the decoder reads is the prompt itself. The image
/// tokens are not patchable positions.</remarks>
public sealed class Qwen25VlPatchingEngine : CausalPatchingEngine<Qwen25VlPreparedSample>
{
    private readonly Qwen25VlForConditionalGeneration _model;
    private readonly ImageCache<Tensor> _features;

    /// <param name="sites">the sites it patches (default: Qwen2.5-VL's)</param>
    public Qwen25VlPatchingEngine(Qwen25VlForConditionalGeneration model, PatchingOptions? options = null, IReadOnlyList<PatchSite>? sites = null) : base(options)
    {
        _model = model;
        Sites = sites ?? Qwen25VlSites.All;
        _features = new ImageCache<Tensor>(Options.ImageCacheSize, t => t.Dispose());
    }

    public override int NumLayers => _model.Config.NumHiddenLayers;
    public override int NumHeads => _model.Config.NumAttentionHeads;
    public override IReadOnlyList<PatchSite> Sites { get; }
    protected override string FamilyName => "Qwen2.5-VL";
    protected override string StackName => "language model";
    protected override string ImageToken => QwenTokenizer.ImagePad;

    protected override Qwen25VlPreparedSample PrepareRuns(PatchingInputs inputs, CorruptionMode mode, PromptIds ids)
    {
        var image = ImageSpan(ids.Clean, "clean");
        if (!ReferenceEquals(ids.Corrupt, ids.Clean))
        {
            var corruptSpan = ImageSpan(ids.Corrupt, "corrupt");
            if (corruptSpan != image)
                throw new ArgumentException($"the clean prompt has its {image.Count} image tokens at {image.Start} and the corrupt prompt {corruptSpan.Count} at {corruptSpan.Start}; positions would not correspond");
        }

        var cleanGrid = Grid(inputs.CleanImage);
        var cleanFeatures = Features(inputs.CleanImage);                  // [N, D]
        CheckTokens(cleanFeatures, image, "clean image", inputs.CleanImage);
        Tensor? noisy = null;
        var corruptImage = mode == CorruptionMode.Image ? inputs.CorruptImage ?? throw new ArgumentException("image corruption needs a corrupt image") : inputs.CleanImage;
        var corruptFeatures = mode switch
        {
            CorruptionMode.Image => Features(corruptImage),
            CorruptionMode.Noise => noisy = GaussianNoise.Add(cleanFeatures, Options.NoiseMultiple, Options.NoiseSeed),
            _ => cleanFeatures,
        };
        if (mode == CorruptionMode.Image) CheckTokens(corruptFeatures, image, "corrupt image", corruptImage);

        var cleanInputs = _model.MergeInputs(ids.Clean, null, cleanFeatures, cleanGrid);            // [1, S, D], [3, 1, S]
        var (cleanLogits, clean) = CleanRun(cleanInputs.InputsEmbeds, cleanInputs.PositionIds);
        var corruptInputs = _model.MergeInputs(ids.Corrupt, null, corruptFeatures, Grid(corruptImage));
        var (corruptLogits, corrupt) = CorruptRun(corruptInputs.InputsEmbeds, corruptInputs.PositionIds);
        // Input positions are sequence positions: no image token stands for its features here.
        var layout = new SequenceLayout(-1, 0, (int)corruptInputs.InputsEmbeds.shape[1]);
        return new Qwen25VlPreparedSample(inputs, mode, ids, clean, cleanLogits, corruptLogits, corrupt, layout, image, noisy);
    }

    protected override (Tensor Logits, KeyValueCache[]? Cache) Decode(
        Tensor hidden, Tensor positionIds, IReadOnlyList<KeyValueCache>? past, HookContext? hooks, int fromLayer, bool useCache)
    {
        var output = _model.Model.Forward(hidden, positionIds, null, past, hooks, fromLayer, useCache);
        return (_model.Logits(output.LastHiddenState.select(1, -1)), output.Cache);
    }

    /// <summary>--compat original: there is no original Qwen code; text pairs of different token lengths are refused in both modes.</summary>
    protected override PromptIds OriginalMismatchedPrompts(Tensor clean, Tensor corrupt) =>
        throw LengthMismatch((int)clean.shape[1], (int)corrupt.shape[1]);

    protected override PromptLengthMismatchException LengthMismatch(int clean, int corrupt) =>
        new(clean, corrupt, "choose a corrupt prompt of the same token length");

    protected override string PositionsNote => $" (input ids, every {QwenTokenizer.ImagePad} expanded)";

    protected override void ValidatePosition(Qwen25VlPreparedSample sample, PatchUnit unit)
    {
        if (sample.Image.Contains(unit.Position))
            throw new ArgumentOutOfRangeException("units", $"position {unit.Position} is one of the {sample.Image.Count} {QwenTokenizer.ImagePad} tokens ({sample.Image.Start}..{sample.Image.Start + sample.Image.Count - 1}), image features, not a text position to patch");
    }

    /// <summary>The prompt's one run of image tokens.</summary>
    private ImageSpan ImageSpan(Tensor ids, string which)
    {
        var pads = ids[0].data<long>().ToArray().Select((id, i) => (id, i)).Where(x => x.id == _model.Config.ImageTokenId).Select(x => x.i).ToList();
        if (pads.Count == 0)
            throw new ArgumentException($"the {which} prompt holds no {QwenTokenizer.ImagePad} (id {_model.Config.ImageTokenId}); a Qwen2.5-VL prompt holds one image");
        if (pads[^1] - pads[0] + 1 != pads.Count)
            throw new ArgumentException($"the {which} prompt's {QwenTokenizer.ImagePad} tokens are not one run; a Qwen2.5-VL prompt holds one image");
        return new ImageSpan(pads[0], pads.Count);
    }

    private static void CheckTokens(Tensor features, ImageSpan span, string which, ImageInput image)
    {
        if (features.shape[0] != span.Count)
            throw new ArgumentException($"the {which} ({image.Key}) gives {features.shape[0]} image tokens but the prompt holds {span.Count}; " +
                "clean and corrupt images must give the same number of image tokens (the same size after resizing) for positions to correspond");
    }

    private static Tensor Grid(ImageInput image) =>
        image.Grid ?? throw new ArgumentException($"image {image.Key} has no grid_thw: Qwen2.5-VL images come from its sample encoder");

    /// <summary>The image features [N, D] of an image, computed once per image.</summary>
    private Tensor Features(ImageInput image) => _features.GetOrAdd(image.Key, () =>
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var features = _model.ImageFeatures(image.Pixels, Grid(image));
        features.DetachFromDisposeScope();
        return features;
    });

    /// <summary>
    /// The plain path's unit: three full forwards, each with the vision tower: clean (recording the
    /// patch's value), corrupt, and the corrupt input again with the value written at the unit's position.
    /// </summary>
    protected override (Tensor Patched, Tensor Clean, Tensor Corrupt) PlainLogits(Qwen25VlPreparedSample sample, PatchUnit u)
    {
        var inputs = sample.Inputs;
        var corruptImage = sample.Mode == CorruptionMode.Image ? inputs.CorruptImage! : inputs.CleanImage;
        var route = Route(u.Site, u.Layer);
        long m = sample.SequencePosition(u.Position);

        using var clean = new HookContext().Record(route.Source);
        var cleanLogits = _model.AnswerLogits(inputs.CleanImage.Pixels, Grid(inputs.CleanImage), sample.CleanIds, null, clean);
        var value = clean.Cache[route.Source][0, m];                      // [D] or [H, Dh]
        if (u.Site.PerHead) value = value[u.Head];                         // [Dh]

        using var corrupt = CorruptHooks(sample);
        var corruptLogits = _model.AnswerLogits(corruptImage.Pixels, Grid(corruptImage), sample.CorruptIds, null, corrupt);

        using var patched = CorruptHooks(sample).Edit(route.Target, x =>
        {
            if (u.Site.PerHead) x[0, m, (long)u.Head] = value;
            else x[0, m] = value;
            return x;
        });
        var patchedLogits = _model.AnswerLogits(corruptImage.Pixels, Grid(corruptImage), sample.CorruptIds, null, patched);
        return (patchedLogits, cleanLogits, corruptLogits);
    }

    /// <summary>Noise mode's corrupt input: the clean image whose features (projector.out) are replaced
    /// by the sample's noisy ones (the same seeded noise the fast path used).</summary>
    private static HookContext CorruptHooks(Qwen25VlPreparedSample sample) =>
        sample.NoisyFeatures is { } noisy ? new HookContext().Edit(HookName.ProjectorOut, _ => noisy.clone()) : new HookContext();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _features.Clear();
    }
}

/// <summary>Where a prompt's image tokens are: input positions Start..Start+Count-1.</summary>
public readonly record struct ImageSpan(int Start, int Count)
{
    public bool Contains(int position) => position >= Start && position < Start + Count;
}

/// <summary>What a Qwen2.5-VL sample's clean and corrupt runs leave for its patched runs.</summary>
public sealed class Qwen25VlPreparedSample(
    PatchingInputs inputs, CorruptionMode mode, PromptIds ids, HookContext clean, Tensor cleanLogits, Tensor corruptLogits,
    CausalCorruptRun corrupt, SequenceLayout layout, ImageSpan image, Tensor? noisyFeatures)
    : CausalPreparedSample(inputs, mode, ids, clean, cleanLogits, corruptLogits, corrupt, layout)
{
    /// <summary>The prompt's image tokens (not patchable).</summary>
    public ImageSpan Image { get; } = image;

    /// <summary>Noise mode: the noisy image features of the corrupt run [N, D].</summary>
    public Tensor? NoisyFeatures { get; } = noisyFeatures;

    protected override void Dispose(bool disposing)
    {
        if (disposing) NoisyFeatures?.Dispose();
        base.Dispose(disposing);
    }
}
