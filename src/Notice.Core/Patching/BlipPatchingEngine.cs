using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>
/// NOTICE activation patching on BLIP's text encoder. The fast path (design.md §4): the vision
/// encoder once per image and the cross-attention keys/values of its tokens once per image and
/// layer; clean and corrupt runs once per sample, caching every site's activation and the corrupt
/// residual stream entering each layer; a patched run starts from that cached stream at the patched
/// layer; many units of one sample share one forward pass, each batch row its own patch. The plain
/// path recomputes everything per unit, as the original does, and exists to check the fast one.
/// </summary>
public sealed class BlipPatchingEngine : IPatchingEngine
{
    private readonly BlipForQuestionAnswering _model;
    private readonly PatchingOptions _options;
    private readonly ImageCache<(Tensor Embeds, CrossKeyValues[] Kv)> _images;

    public BlipPatchingEngine(BlipForQuestionAnswering model, PatchingOptions? options = null)
    {
        _model = model;
        _options = options ?? new PatchingOptions();
        _images = new ImageCache<(Tensor Embeds, CrossKeyValues[] Kv)>(_options.ImageCacheSize, state =>
        {
            state.Embeds.Dispose();
            foreach (var x in state.Kv) x.Dispose();
        });
    }

    public int NumLayers => _model.Config.Text.NumHiddenLayers;
    public int NumHeads => _model.Config.Text.NumAttentionHeads;

    /// <summary>Runs the clean and corrupt passes of a sample once and keeps what patches need.</summary>
    public PreparedSample Prepare(PatchingInputs inputs, CorruptionMode mode)
    {
        using var span = NoticeTelemetry.Source.StartActivity("clean and corrupt runs");
        span?.SetTag("notice.mode", mode.ToString().ToLowerInvariant());
        using var noGrad = torch.no_grad();
        var (cleanIds, corruptIds, positions) = PromptIds(inputs, mode);
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
                noisyEmbeds = GaussianNoise.Add(clean.Embeds, _options.NoiseMultiple, _options.NoiseSeed);
                corruptKv = _model.TextEncoder.CrossKeysValues(noisyEmbeds);
                break;
            default:
                corruptKv = clean.Kv;
                break;
        }

        using var scope = torch.NewDisposeScope();
        var cleanHooks = new HookContext().RecordWhere(n => n.StartsWith("text.blocks.", StringComparison.Ordinal));
        var cleanQ = _model.EncodeQuestion(cleanIds, null, clean.Kv, cleanHooks);
        var cleanLogits = _model.FirstStepLogits(cleanQ).MoveToOuterDisposeScope();
        var corruptHooks = new HookContext().RecordWhere(n => n.EndsWith(".resid_pre", StringComparison.Ordinal));
        var corruptQ = _model.EncodeQuestion(corruptIds, null, corruptKv, corruptHooks);
        var corruptLogits = _model.FirstStepLogits(corruptQ).MoveToOuterDisposeScope();
        var baseline = MetricsCalculator.Baseline(cleanLogits, corruptLogits, inputs.CorrectId, inputs.IncorrectId);
        return new PreparedSample(inputs, mode, positions, cleanIds.MoveToOuterDisposeScope(), corruptIds.MoveToOuterDisposeScope(),
            cleanHooks, corruptHooks, corruptKv, noisyEmbeds, cleanLogits, corruptLogits, baseline);
    }

    /// <summary>Prompt ids for the clean and corrupt runs, and how many positions can be patched.</summary>
    private (Tensor Clean, Tensor Corrupt, int Positions) PromptIds(PatchingInputs inputs, CorruptionMode mode)
    {
        var clean = inputs.CleanIds.to(ScalarType.Int64).to(_model.Device);
        int t = (int)clean.shape[1];
        if (mode != CorruptionMode.Text) return (clean, clean, t);
        var corrupt = (inputs.CorruptIds ?? throw new ArgumentException("text corruption needs a corrupt prompt")).to(ScalarType.Int64).to(_model.Device);
        int tc = (int)corrupt.shape[1];
        if (tc == t) return (clean, corrupt, t);
        if (_options.Compat == CompatMode.Default) throw new PromptLengthMismatchException(t, tc);
        // The original pads the batch to the longer prompt with [PAD] and attends to it; positions
        // are those of the clean prompt alone.
        int longest = Math.Max(t, tc);
        return (PadRight(clean, longest), PadRight(corrupt, longest), t);
    }

    private Tensor PadRight(Tensor ids, int length) =>
        ids.shape[1] == length ? ids : torch.nn.functional.pad(ids, [0, length - ids.shape[1]], value: _model.Config.Text.PadTokenId);

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

    /// <summary>The fast path: units grouped by (site, layer), each group run in batches from the cached
    /// corrupt stream entering that layer. Results come back in the order of <paramref name="units"/>.</summary>
    public UnitResult[] Run(PreparedSample sample, IReadOnlyList<PatchUnit> units)
    {
        Validate(sample, units);
        var results = new UnitResult[units.Count];
        var groups = units.Select((u, i) => (u, i)).GroupBy(x => (x.u.Site.Hook(x.u.Layer), x.u.Layer, x.u.Site.PerHead));
        foreach (var group in groups)
        {
            foreach (var chunk in group.Chunk(Math.Max(1, _options.BatchSize)))
            {
                var metrics = RunBatch(sample, group.Key.Item1, group.Key.Layer, group.Key.PerHead, chunk.Select(c => c.u).ToArray());
                for (int k = 0; k < chunk.Length; k++) results[chunk[k].i] = new UnitResult(chunk[k].u, metrics[k]);
            }
        }
        return results;
    }

    private PatchMetrics[] RunBatch(PreparedSample sample, string hook, int layer, bool perHead, PatchUnit[] units)
    {
        using var span = NoticeTelemetry.Source.StartActivity("patched batch");
        span?.SetTag("notice.hook", hook);
        span?.SetTag("notice.units", units.Length);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long n = units.Length;
        var positions = units.Select(u => (long)u.Position).ToArray();
        var rows = Enumerable.Range(0, units.Length).Select(i => (long)i).ToArray();
        var cleanValue = sample.Clean.Cache[hook][0];                   // [T, D] or [T, H, Dh]
        var posIndex = torch.tensor(positions, device: cleanValue.device);
        Tensor values;
        long[]? heads = null;
        if (perHead)
        {
            heads = units.Select(u => (long)u.Head).ToArray();
            values = cleanValue.index(new TensorIndex[] { TensorIndex.Tensor(posIndex), TensorIndex.Tensor(torch.tensor(heads, device: cleanValue.device)) });
        }
        else
        {
            values = cleanValue.index_select(0, posIndex);
        }
        using var hooks = new HookContext().Patch(hook, rows, positions, heads, values);
        var start = sample.Corrupt.Cache[$"text.blocks.{layer}.resid_pre"];
        var hidden = start.expand(n, -1, -1);
        var q = _model.TextEncoder.Forward(hidden, null, sample.CorruptKv, hooks, fromLayer: layer);
        var logits = _model.FirstStepLogits(q);
        return MetricsCalculator.Compute(logits, sample.CleanLogits, sample.CorruptLogits, sample.Inputs.CorrectId, sample.Inputs.IncorrectId);
    }

    /// <summary>
    /// The plain path: for each unit, one forward of the whole model (vision encoder included) on a
    /// batch of three rows [clean, corrupt, corrupt], row 2 patched from row 0 at the same position,
    /// exactly as the original trace_with_patch. Slow on purpose: the reference for the fast path.
    /// </summary>
    public UnitResult[] RunPlain(PreparedSample sample, IReadOnlyList<PatchUnit> units)
    {
        Validate(sample, units);
        var results = new UnitResult[units.Count];
        for (int k = 0; k < units.Count; k++)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var u = units[k];
            var inputs = sample.Inputs;
            var corruptPixels = sample.Mode == CorruptionMode.Image ? inputs.CorruptImage!.Pixels : inputs.CleanImage.Pixels;
            var pixels = torch.cat([inputs.CleanImage.Pixels, corruptPixels, corruptPixels], 0);
            var ids = torch.cat([sample.CleanIds, sample.CorruptIds, sample.CorruptIds], 0);
            using var hooks = new HookContext().Edit(u.Site.Hook(u.Layer), x =>
            {
                if (u.Site.PerHead) x[2, u.Position, u.Head] = x[0, u.Position, u.Head];
                else x[2, u.Position] = x[0, u.Position];
                return x;
            });
            var embeds = _model.EncodeImage(pixels);
            if (sample.Mode == CorruptionMode.Noise)
                embeds = torch.cat([embeds.narrow(0, 0, 1), sample.NoisyEmbeds!.expand(2, -1, -1)], 0);
            var kv = _model.TextEncoder.CrossKeysValues(embeds);
            var q = _model.EncodeQuestion(ids, null, kv, hooks);
            var logits = _model.FirstStepLogits(q);
            var m = MetricsCalculator.Compute(logits.narrow(0, 2, 1), logits[0], logits[1], inputs.CorrectId, inputs.IncorrectId);
            results[k] = new UnitResult(u, m[0]);
        }
        return results;
    }

    IPreparedSample IPatchingEngine.Prepare(PatchingInputs inputs, CorruptionMode mode) => Prepare(inputs, mode);
    UnitResult[] IPatchingEngine.Run(IPreparedSample sample, IReadOnlyList<PatchUnit> units) => Run(Own(sample), units);
    UnitResult[] IPatchingEngine.RunPlain(IPreparedSample sample, IReadOnlyList<PatchUnit> units) => RunPlain(Own(sample), units);

    private static PreparedSample Own(IPreparedSample sample) =>
        sample as PreparedSample ?? throw new ArgumentException($"a {sample.GetType().Name} was prepared by another engine", nameof(sample));

    private void Validate(PreparedSample sample, IReadOnlyList<PatchUnit> units)
    {
        foreach (var u in units)
        {
            if (u.Layer < 0 || u.Layer >= NumLayers)
                throw new ArgumentOutOfRangeException(nameof(units), $"layer {u.Layer} is out of range: the text encoder has layers 0..{NumLayers - 1}");
            if (u.Site.PerHead && (u.Head < 0 || u.Head >= NumHeads))
                throw new ArgumentOutOfRangeException(nameof(units), $"head {u.Head} is out of range: layers have heads 0..{NumHeads - 1}");
            if (u.Position < 0 || u.Position >= sample.Positions)
                throw new ArgumentOutOfRangeException(nameof(units), $"position {u.Position} is out of range: the prompt has positions 0..{sample.Positions - 1}");
        }
    }

    public void Dispose() => _images.Clear();
}

/// <summary>What a sample's clean and corrupt runs leave for its patched runs.</summary>
public sealed class PreparedSample(
    PatchingInputs inputs, CorruptionMode mode, int positions, Tensor cleanIds, Tensor corruptIds,
    HookContext clean, HookContext corrupt, CrossKeyValues[] corruptKv, Tensor? noisyEmbeds,
    Tensor cleanLogits, Tensor corruptLogits, SampleBaseline baseline) : IPreparedSample
{
    public PatchingInputs Inputs { get; } = inputs;
    public CorruptionMode Mode { get; } = mode;
    /// <summary>Token positions that can be patched: the clean prompt's length.</summary>
    public int Positions { get; } = positions;
    public Tensor CleanIds { get; } = cleanIds;
    public Tensor CorruptIds { get; } = corruptIds;
    public HookContext Clean { get; } = clean;
    public HookContext Corrupt { get; } = corrupt;
    public CrossKeyValues[] CorruptKv { get; } = corruptKv;
    public Tensor? NoisyEmbeds { get; } = noisyEmbeds;
    public Tensor CleanLogits { get; } = cleanLogits;
    public Tensor CorruptLogits { get; } = corruptLogits;
    public SampleBaseline Baseline { get; } = baseline;

    public void Dispose()
    {
        Clean.Dispose();
        Corrupt.Dispose();
        CleanIds.Dispose();
        CorruptIds.Dispose();
        CleanLogits.Dispose();
        CorruptLogits.Dispose();
        if (NoisyEmbeds is not null)
        {
            NoisyEmbeds.Dispose();
            foreach (var kv in CorruptKv) kv.Dispose();
        }
    }
}
