using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using TorchSharp;
using static TorchSharp.torch;

using Notice.Core.Patching;

namespace Notice.Core.Families.Blip;

/// <summary>
/// NOTICE activation patching on BLIP's text encoder (bidirectional: a patched run recomputes every
/// position from the patched layer up). What is BLIP's own (design.md §4): the vision encoder once per
/// image and the cross-attention keys/values of its tokens once per image and layer; the corrupt
/// residual stream entering each layer kept from the corrupt run, where a patched run starts with the
/// corrupt keys/values; units of one site and layer batched (at most BatchSize rows); and the plain
/// path, one three-row forward of the whole model per unit, as the original runs it.
/// </summary>
public sealed class BlipPatchingEngine : PatchingEngine<BlipPreparedSample>
{
    private readonly BlipForQuestionAnswering _model;
    private readonly ImageCache<(Tensor Embeds, CrossKeyValues[] Kv)> _images;

    /// <param name="sites">the sites it patches (default: BLIP's; a family built on BLIP names its own)</param>
    public BlipPatchingEngine(BlipForQuestionAnswering model, PatchingOptions? options = null, IReadOnlyList<PatchSite>? sites = null) : base(options)
    {
        _model = model;
        Freeze(model);
        Sites = sites ?? BlipSites.All;
        _images = new ImageCache<(Tensor Embeds, CrossKeyValues[] Kv)>(Options.ImageCacheSize, state =>
        {
            state.Embeds.Dispose();
            foreach (var x in state.Kv) x.Dispose();
        });
    }

    public override int NumLayers => _model.Config.Text.NumHiddenLayers;
    public override int NumHeads => _model.Config.Text.NumAttentionHeads;
    public override IReadOnlyList<PatchSite> Sites { get; }
    protected override string FamilyName => "BLIP";
    protected override string StackName => "text encoder";

    protected override BlipPreparedSample PrepareRuns(PatchingInputs inputs, CorruptionMode mode, PromptIds ids)
    {
        var clean = ImageState(inputs.CleanImage);
        CrossKeyValues[] corruptKv;
        Tensor? noisyEmbeds = null;
        switch (mode)
        {
            case CorruptionMode.Image:
                if (inputs.CorruptImage is null) throw new ArgumentException("image corruption needs a corrupt image");
                corruptKv = ImageState(inputs.CorruptImage).Kv;
                break;
            case CorruptionMode.Noise:
                noisyEmbeds = GaussianNoise.Add(clean.Embeds, Options.NoiseMultiple, Options.NoiseSeed);   // [1, P, Dv]
                corruptKv = _model.TextEncoder.CrossKeysValues(noisyEmbeds);
                break;
            default:
                corruptKv = clean.Kv;
                break;
        }

        var cleanValues = RecordPatchSources();
        var cleanLogits = _model.FirstStepLogits(_model.EncodeQuestion(ids.Clean, null, clean.Kv, cleanValues));
        using var corrupt = new HookContext().Record(HookName.EveryLayer(BlockHook.ResidPre, NumLayers));
        var corruptLogits = _model.FirstStepLogits(_model.EncodeQuestion(ids.Corrupt, null, corruptKv, corrupt));
        return new BlipPreparedSample(inputs, mode, ids, cleanValues, cleanLogits, corruptLogits,
            TakeEveryLayer(corrupt, BlockHook.ResidPre), corruptKv, noisyEmbeds);
    }

    /// <summary>Prompt ids on the model's device.</summary>
    protected override Tensor PromptTensor(Tensor ids) => base.PromptTensor(ids).to(_model.Device);

    /// <summary>--compat original: the original pads the batch to the longer prompt with [PAD] and
    /// attends to it; positions are those of the clean prompt alone.</summary>
    protected override PromptIds OriginalMismatchedPrompts(Tensor clean, Tensor corrupt)
    {
        long longest = Math.Max(clean.shape[1], corrupt.shape[1]);
        return new PromptIds(PadRight(clean, longest), PadRight(corrupt, longest), (int)clean.shape[1]);
    }

    private Tensor PadRight(Tensor ids, long length) =>
        ids.shape[1] == length ? ids : torch.nn.functional.pad(ids, [0, length - ids.shape[1]], value: _model.Config.Text.PadTokenId);

    /// <summary>An image's embeddings [1, P, Dv] and every layer's cross-attention keys/values, once per image.</summary>
    private (Tensor Embeds, CrossKeyValues[] Kv) ImageState(ImageInput image) => _images.GetOrAdd(image.Key, () =>
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var embeds = _model.EncodeImage(image.Pixels);
        var kv = _model.TextEncoder.CrossKeysValues(embeds);
        embeds.DetachFromDisposeScope();
        foreach (var x in kv) { x.Keys.DetachFromDisposeScope(); x.Values.DetachFromDisposeScope(); }
        return (embeds, kv);
    });

    /// <summary>Units of one site share a batch (the original's tables are per site).</summary>
    protected override object? BatchKey(PatchUnit unit) => unit.Site;

    /// <summary>The cached corrupt stream entering <paramref name="layer"/>, every position, with the corrupt image's keys/values.</summary>
    protected override Tensor PatchedLogits(BlipPreparedSample sample, int layer, long start, int rows, HookContext patches)
    {
        var hidden = sample.CorruptResidPre[layer].expand(rows, -1, -1);                           // [N, T, D]
        var q = _model.TextEncoder.Forward(hidden, null, sample.CorruptKv, patches, fromLayer: layer);   // [N, T, D]
        return _model.FirstStepLogits(q);                                                          // [N, V]
    }

    /// <summary>
    /// The plain path's unit: one forward of the whole model (vision encoder included) on a batch of
    /// three rows [clean, corrupt, corrupt], row 2 patched from row 0 at the same position, exactly as
    /// the original trace_with_patch.
    /// </summary>
    protected override (Tensor Patched, Tensor Clean, Tensor Corrupt) PlainLogits(BlipPreparedSample sample, PatchUnit u)
    {
        var inputs = sample.Inputs;
        var corruptPixels = sample.Mode == CorruptionMode.Image ? inputs.CorruptImage!.Pixels : inputs.CleanImage.Pixels;
        var pixels = torch.cat([inputs.CleanImage.Pixels, corruptPixels, corruptPixels], 0);      // [3, C, H, W]
        var ids = torch.cat([sample.CleanIds, sample.CorruptIds, sample.CorruptIds], 0);          // [3, T]
        using var hooks = new HookContext().Edit(u.Site.Hook(u.Layer), x =>
        {
            if (u.Site.PerHead) x[2, u.Position, u.Head] = x[0, u.Position, u.Head];
            else x[2, u.Position] = x[0, u.Position];
            return x;
        });
        var embeds = _model.EncodeImage(pixels);                                                   // [3, P, Dv]
        if (sample.Mode == CorruptionMode.Noise)
            embeds = torch.cat([embeds.narrow(0, 0, 1), sample.NoisyEmbeds!.expand(2, -1, -1)], 0);
        var kv = _model.TextEncoder.CrossKeysValues(embeds);
        var logits = _model.FirstStepLogits(_model.EncodeQuestion(ids, null, kv, hooks));           // [3, V]
        return (logits.narrow(0, 2, 1), logits[0], logits[1]);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _images.Clear();
    }
}

/// <summary>What a BLIP sample's clean and corrupt runs leave for its patched runs.</summary>
public sealed class BlipPreparedSample : PreparedSample
{
    public BlipPreparedSample(PatchingInputs inputs, CorruptionMode mode, PromptIds ids, HookContext clean, Tensor cleanLogits, Tensor corruptLogits,
        Tensor[] corruptResidPre, CrossKeyValues[] corruptKv, Tensor? noisyEmbeds)
        : base(inputs, mode, ids, clean, cleanLogits, corruptLogits)
    {
        CorruptResidPre = corruptResidPre;
        NoisyEmbeds = noisyEmbeds;
        CorruptKv = corruptKv;
        if (noisyEmbeds is not null)   // the noisy keys/values are the sample's; an image's belong to the image cache
            foreach (var kv in corruptKv) { Own(kv.Keys); Own(kv.Values); }
    }

    /// <summary>Per layer, the corrupt residual stream entering it [1, T, D].</summary>
    public Tensor[] CorruptResidPre { get; }
    /// <summary>Per layer, the cross-attention keys/values of the corrupt run's image [1, H, P, Dh].</summary>
    public CrossKeyValues[] CorruptKv { get; }
    /// <summary>Noise mode: the noisy image embeddings of the corrupt run [1, P, Dv].</summary>
    public Tensor? NoisyEmbeds { get; }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var t in CorruptResidPre) t.Dispose();
            if (NoisyEmbeds is not null)
            {
                NoisyEmbeds.Dispose();
                foreach (var kv in CorruptKv) kv.Dispose();
            }
        }
        base.Dispose(disposing);
    }
}
