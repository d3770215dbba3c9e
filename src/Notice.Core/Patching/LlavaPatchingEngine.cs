using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using Notice.Vlm.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>
/// NOTICE activation patching on LLaVA's language model. The fast path (design.md §4, causal
/// decoders): the vision tower once per image; the clean and corrupt runs once per sample, the clean
/// run keeping every site's activation, the corrupt run its residual stream entering each layer and
/// its KV cache. A patch at (layer l, position p) leaves every position before p and every layer
/// below l as in the corrupt run, so its run starts from the corrupt stream entering layer l and
/// recomputes only the positions from p on, attending to the corrupt keys/values cut to p. Units of
/// one layer share a forward pass, each batch row its own patch, the one-row cache serving every row.
/// The plain path runs three full forwards per unit (vision tower included), as the original does,
/// and exists to check the fast one.
/// </summary>
/// <remarks>Positions are input-id indices, the &lt;image&gt; token counted once: text token i after
/// the image sits at merged position i + N - 1 (N image features). The image token itself is not a
/// patchable position.</remarks>
public sealed class LlavaPatchingEngine : IPatchingEngine
{
    private readonly LlavaForConditionalGeneration _model;
    private readonly PatchingOptions _options;
    private readonly ImageCache<Tensor> _features;

    public LlavaPatchingEngine(LlavaForConditionalGeneration model, PatchingOptions? options = null)
    {
        _model = model;
        _options = options ?? new PatchingOptions();
        _features = new ImageCache<Tensor>(_options.ImageCacheSize, t => t.Dispose());
    }

    public int NumLayers => _model.Config.Text.NumHiddenLayers;
    public int NumHeads => _model.Config.Text.NumAttentionHeads;

    /// <summary>Runs the clean and corrupt passes of a sample once and keeps what patches need.</summary>
    public LlavaPreparedSample Prepare(PatchingInputs inputs, CorruptionMode mode)
    {
        using var span = NoticeTelemetry.Source.StartActivity("clean and corrupt runs");
        span?.SetTag("notice.mode", mode.ToString().ToLowerInvariant());
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var (cleanIds, corruptIds, positions) = PromptIds(inputs, mode);
        int image = ImagePosition(cleanIds), corruptImage = ImagePosition(corruptIds);
        if (corruptImage != image)
            throw new ArgumentException($"the clean prompt has {LlavaPrompt.ImageToken} at position {image} and the corrupt prompt at {corruptImage}; positions would not correspond");

        var cleanFeatures = Features(inputs.CleanImage);
        Tensor? noisy = null;
        var corruptFeatures = mode switch
        {
            CorruptionMode.Image => Features(inputs.CorruptImage ?? throw new ArgumentException("image corruption needs a corrupt image")),
            CorruptionMode.Noise => noisy = GaussianNoise.Add(cleanFeatures, _options.NoiseMultiple, _options.NoiseSeed),
            _ => cleanFeatures,
        };

        var lm = _model.LanguageModel.Model;
        // Clean: every value a patch may read (module outputs, per-head contexts, the final norm).
        var clean = new HookContext().RecordWhere(IsPatchSource);
        var cleanInputs = _model.MergeInputs(cleanIds, null, cleanFeatures);
        var cleanLogits = LastLogits(lm.Forward(cleanInputs.InputsEmbeds, cleanInputs.PositionIds, hooks: clean));
        // Corrupt: where patched runs start (the stream entering each layer) and what they attend to.
        var corrupt = new HookContext().RecordWhere(n => n.EndsWith(".resid_pre", StringComparison.Ordinal));
        var corruptInputs = _model.MergeInputs(corruptIds, null, corruptFeatures);
        var corruptOutput = lm.Forward(corruptInputs.InputsEmbeds, corruptInputs.PositionIds, hooks: corrupt, useCache: true);
        var corruptLogits = LastLogits(corruptOutput);
        var cache = corruptOutput.Cache!;
        foreach (var kv in cache) { kv.Keys.DetachFromDisposeScope(); kv.Values.DetachFromDisposeScope(); }

        var residPre = Enumerable.Range(0, NumLayers).Select(l => corrupt.Take($"text.blocks.{l}.resid_pre")).ToArray();
        corrupt.Dispose();
        var baseline = MetricsCalculator.Baseline(cleanLogits, corruptLogits, inputs.CorrectId, inputs.IncorrectId);
        var layout = new LlavaLayout(image, (int)cleanFeatures.shape[1], (int)corruptInputs.InputsEmbeds.shape[1]);
        return new LlavaPreparedSample(inputs, mode, positions, layout, Detach(cleanIds), Detach(corruptIds), clean, residPre, cache,
            Detach(corruptInputs.PositionIds), noisy, Detach(cleanLogits), Detach(corruptLogits), baseline);
    }

    private static Tensor Detach(Tensor t)
    {
        t.DetachFromDisposeScope();
        return t;
    }

    private static bool IsPatchSource(string hook) =>
        hook == "text.final_norm" ||
        (hook.StartsWith("text.blocks.", StringComparison.Ordinal) &&
         (hook.EndsWith(".resid_post", StringComparison.Ordinal) || hook.EndsWith(".attn.out", StringComparison.Ordinal) ||
          hook.EndsWith(".mlp.out", StringComparison.Ordinal) || hook.EndsWith(".attn.z", StringComparison.Ordinal)));

    private Tensor LastLogits(LlamaOutput output) => _model.LanguageModel.Logits(output.LastHiddenState.select(1, -1));

    /// <summary>Prompt ids of the clean and corrupt runs, and how many positions can be patched.</summary>
    private (Tensor Clean, Tensor Corrupt, int Positions) PromptIds(PatchingInputs inputs, CorruptionMode mode)
    {
        var clean = inputs.CleanIds.to(ScalarType.Int64).clone();
        int t = (int)clean.shape[1];
        if (mode != CorruptionMode.Text) return (clean, clean, t);
        var corrupt = (inputs.CorruptIds ?? throw new ArgumentException("text corruption needs a corrupt prompt")).to(ScalarType.Int64).clone();
        int tc = (int)corrupt.shape[1];
        if (tc == t) return (clean, corrupt, t);
        if (_options.Compat == CompatMode.Default)
            throw new PromptLengthMismatchException(t, tc, "choose a corrupt prompt of the same token length");
        // The original runs the two prompts separately and patches by position; past the shorter one
        // it raises IndexError and drops the unit, so only the common positions can be patched.
        return (clean, corrupt, Math.Min(t, tc));
    }

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
        return Detach(_model.ImageFeatures(image.Pixels));
    });

    /// <summary>Where a unit's patch goes and where its value comes from, by compatibility mode.</summary>
    private PatchRoute Route(PatchUnit u) => _options.Compat == CompatMode.Original
        ? LlavaOriginalCompat.Route(u.Site, u.Layer, NumLayers)
        : PatchRoute.Same(u.Site, u.Layer);

    /// <summary>The clean value a unit writes at merged position <paramref name="merged"/>, shaped for its target.</summary>
    private Tensor Value(PatchRoute route, PatchUnit u, Tensor source, long merged)
    {
        var value = source[0, merged];                       // [D] or [H, Dh]
        if (u.Site.PerHead) return value[u.Head];
        return route.TargetIsPerHead && value.dim() == 1 ? value.view(NumHeads, -1) : value;
    }

    /// <summary>The fast path: units grouped by layer, each group run in batches from the cached corrupt
    /// stream entering that layer. Results come back in the order of <paramref name="units"/>.</summary>
    public UnitResult[] Run(LlavaPreparedSample sample, IReadOnlyList<PatchUnit> units)
    {
        Validate(sample, units);
        var results = new UnitResult[units.Count];
        foreach (var layer in units.Select((u, i) => (u, i)).GroupBy(x => x.u.Layer))
        {
            foreach (var chunk in Batches(sample, layer))
            {
                var metrics = RunBatch(sample, layer.Key, chunk.Select(c => c.u).ToArray());
                for (int k = 0; k < chunk.Length; k++) results[chunk[k].i] = new UnitResult(chunk[k].u, metrics[k]);
            }
        }
        return results;
    }

    /// <summary>
    /// Units of one layer in batches, latest positions first: a batch recomputes from its earliest
    /// position to the end, so batching neighbouring positions keeps that tail short. At most
    /// BatchSize rows and BatchTokens rows x tail positions per batch.
    /// </summary>
    private IEnumerable<(PatchUnit u, int i)[]> Batches(LlavaPreparedSample sample, IEnumerable<(PatchUnit u, int i)> units)
    {
        var batch = new List<(PatchUnit u, int i)>();
        foreach (var x in units.OrderByDescending(x => x.u.Position))
        {
            long tail = sample.Layout.MergedLength - sample.Layout.Merged(x.u.Position);
            if (batch.Count > 0 && (batch.Count >= Math.Max(1, _options.BatchSize) || (batch.Count + 1) * tail > _options.BatchTokens))
            {
                yield return batch.ToArray();
                batch.Clear();
            }
            batch.Add(x);
        }
        if (batch.Count > 0) yield return batch.ToArray();
    }

    private PatchMetrics[] RunBatch(LlavaPreparedSample sample, int layer, PatchUnit[] units)
    {
        using var span = NoticeTelemetry.Source.StartActivity("patched batch");
        span?.SetTag("notice.layer", layer);
        span?.SetTag("notice.units", units.Length);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long n = units.Length;
        var merged = units.Select(u => sample.Layout.Merged(u.Position)).ToArray();
        long start = merged.Min(), length = sample.Layout.MergedLength - start;

        // Each row's patch, at its position relative to the first recomputed one.
        using var hooks = new HookContext();
        var rows = units.Select((u, r) => (u, r, route: Route(u)));
        foreach (var group in rows.GroupBy(x => (x.route.Target, x.u.Site.PerHead)))
        {
            var values = torch.stack(group.Select(x => Value(x.route, x.u, sample.Clean.Cache[x.route.Source], merged[x.r])).ToArray());
            hooks.Patch(group.Key.Target,
                group.Select(x => (long)x.r).ToArray(),
                group.Select(x => merged[x.r] - start).ToArray(),
                group.Key.PerHead ? group.Select(x => (long)x.u.Head).ToArray() : null,
                values);
        }

        var hidden = sample.CorruptResidPre[layer].narrow(1, start, length).expand(n, -1, -1);
        var positionIds = sample.CorruptPositionIds.narrow(1, start, length);
        var past = sample.CorruptCache.Select(kv => kv.Narrow(start)).ToArray();
        var output = _model.LanguageModel.Model.Forward(hidden, positionIds, null, past, hooks, fromLayer: layer);
        return MetricsCalculator.Compute(LastLogits(output), sample.CleanLogits, sample.CorruptLogits, sample.Inputs.CorrectId, sample.Inputs.IncorrectId);
    }

    /// <summary>
    /// The plain path: for each unit, three full forwards as the original trace_with_patch runs them,
    /// each with the vision tower: clean (recording the patch's value), corrupt, and the corrupt input
    /// again with the value written at the unit's position. Slow on purpose: the fast path's reference.
    /// </summary>
    public UnitResult[] RunPlain(LlavaPreparedSample sample, IReadOnlyList<PatchUnit> units)
    {
        Validate(sample, units);
        var inputs = sample.Inputs;
        var corruptPixels = sample.Mode == CorruptionMode.Image ? inputs.CorruptImage!.Pixels : inputs.CleanImage.Pixels;
        var results = new UnitResult[units.Count];
        for (int k = 0; k < units.Count; k++)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var u = units[k];
            var route = Route(u);
            long m = sample.Layout.Merged(u.Position);

            using var clean = new HookContext().Record(route.Source);
            var cleanLogits = _model.AnswerLogits(inputs.CleanImage.Pixels, sample.CleanIds, null, clean);
            var value = Value(route, u, clean.Cache[route.Source], m);

            using var corrupt = CorruptHooks(sample);
            var corruptLogits = _model.AnswerLogits(corruptPixels, sample.CorruptIds, null, corrupt);

            using var patched = CorruptHooks(sample).Edit(route.Target, x =>
            {
                if (u.Site.PerHead) x[0, m, (long)u.Head] = value;
                else x[0, m] = value;
                return x;
            });
            var patchedLogits = _model.AnswerLogits(corruptPixels, sample.CorruptIds, null, patched);
            var metrics = MetricsCalculator.Compute(patchedLogits, cleanLogits, corruptLogits, inputs.CorrectId, inputs.IncorrectId);
            results[k] = new UnitResult(u, metrics[0]);
        }
        return results;
    }

    /// <summary>Noise mode's corrupt input: the clean image whose projected features are replaced by
    /// the sample's noisy ones (the same seeded noise the fast path used).</summary>
    private static HookContext CorruptHooks(LlavaPreparedSample sample) =>
        sample.NoisyFeatures is { } noisy ? new HookContext().Edit("projector.out", _ => noisy.clone()) : new HookContext();

    private void Validate(LlavaPreparedSample sample, IReadOnlyList<PatchUnit> units)
    {
        foreach (var u in units)
        {
            if (u.Layer < 0 || u.Layer >= NumLayers)
                throw new ArgumentOutOfRangeException(nameof(units), $"layer {u.Layer} is out of range: the language model has layers 0..{NumLayers - 1}");
            if (u.Site.PerHead && (u.Head < 0 || u.Head >= NumHeads))
                throw new ArgumentOutOfRangeException(nameof(units), $"head {u.Head} is out of range: layers have heads 0..{NumHeads - 1}");
            if (u.Position < 0 || u.Position >= sample.Positions)
                throw new ArgumentOutOfRangeException(nameof(units), $"position {u.Position} is out of range: the prompt has positions 0..{sample.Positions - 1} (input ids, {LlavaPrompt.ImageToken} counted once)");
            if (u.Position == sample.Layout.ImagePosition)
                throw new ArgumentOutOfRangeException(nameof(units), $"position {u.Position} is the {LlavaPrompt.ImageToken} token, whose {sample.Layout.ImageFeatures} image features are not a text position to patch");
        }
    }

    IPreparedSample IPatchingEngine.Prepare(PatchingInputs inputs, CorruptionMode mode) => Prepare(inputs, mode);
    UnitResult[] IPatchingEngine.Run(IPreparedSample sample, IReadOnlyList<PatchUnit> units) => Run(Own(sample), units);
    UnitResult[] IPatchingEngine.RunPlain(IPreparedSample sample, IReadOnlyList<PatchUnit> units) => RunPlain(Own(sample), units);

    private static LlavaPreparedSample Own(IPreparedSample sample) =>
        sample as LlavaPreparedSample ?? throw new ArgumentException($"a {sample.GetType().Name} was prepared by another engine", nameof(sample));

    public void Dispose() => _features.Clear();
}

/// <summary>How a prompt's input ids sit in the merged sequence the language model reads.</summary>
/// <param name="ImagePosition">the input index of &lt;image&gt;</param>
/// <param name="ImageFeatures">N, the image features that replace it</param>
/// <param name="MergedLength">the corrupt run's merged length (where patched runs end)</param>
public sealed record LlavaLayout(int ImagePosition, int ImageFeatures, int MergedLength)
{
    /// <summary>The merged position of input position <paramref name="position"/> (a text token).</summary>
    public long Merged(int position) => position < ImagePosition ? position : position + ImageFeatures - 1;
}

/// <summary>What a LLaVA sample's clean and corrupt runs leave for its patched runs.</summary>
public sealed class LlavaPreparedSample(
    PatchingInputs inputs, CorruptionMode mode, int positions, LlavaLayout layout, Tensor cleanIds, Tensor corruptIds,
    HookContext clean, Tensor[] corruptResidPre, KeyValueCache[] corruptCache, Tensor corruptPositionIds, Tensor? noisyFeatures,
    Tensor cleanLogits, Tensor corruptLogits, SampleBaseline baseline) : IPreparedSample
{
    public PatchingInputs Inputs { get; } = inputs;
    public CorruptionMode Mode { get; } = mode;
    /// <summary>Input positions that can be patched (0..Positions-1 but the image token).</summary>
    public int Positions { get; } = positions;
    public LlavaLayout Layout { get; } = layout;
    public Tensor CleanIds { get; } = cleanIds;
    public Tensor CorruptIds { get; } = corruptIds;
    /// <summary>The clean run's values at every hook point a patch may read, [1, merged, ...].</summary>
    public HookContext Clean { get; } = clean;
    /// <summary>Per layer, the corrupt residual stream entering it [1, merged, D].</summary>
    public Tensor[] CorruptResidPre { get; } = corruptResidPre;
    /// <summary>Per layer, the corrupt run's keys and values (one row).</summary>
    public KeyValueCache[] CorruptCache { get; } = corruptCache;
    public Tensor CorruptPositionIds { get; } = corruptPositionIds;
    /// <summary>Noise mode: the noisy projected image features of the corrupt run.</summary>
    public Tensor? NoisyFeatures { get; } = noisyFeatures;
    public Tensor CleanLogits { get; } = cleanLogits;
    public Tensor CorruptLogits { get; } = corruptLogits;
    public SampleBaseline Baseline { get; } = baseline;

    public void Dispose()
    {
        Clean.Dispose();
        foreach (var t in CorruptResidPre) t.Dispose();
        foreach (var kv in CorruptCache) kv.Dispose();
        CorruptPositionIds.Dispose();
        NoisyFeatures?.Dispose();
        CleanLogits.Dispose();
        CorruptLogits.Dispose();
        CleanIds.Dispose();
        if (!ReferenceEquals(CorruptIds, CleanIds)) CorruptIds.Dispose();
    }
}
