using Notice.Vlm.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>Where a unit's patch is written (<paramref name="Target"/>) and where its clean value is
/// read (<paramref name="Source"/>): hook points of the patched layer, at the patched position.</summary>
public sealed record PatchRoute(string Target, string Source)
{
    /// <summary>The target is a per-head hook point ([B, T, H, Dh]): a whole-module value is written as [H, Dh].</summary>
    public bool TargetIsPerHead => HookName.IsPerHead(Target);

    /// <summary>A site's own route: restore the site's output from the clean run's value of it.</summary>
    public static PatchRoute Same(PatchSite site, int layer) => new(site.Hook(layer), site.Hook(layer));
}

/// <summary>
/// The one patching core (design.md §3-4). Every family's engine shares, from here: checking units
/// (site, layer, head, position) and prompt lengths (<see cref="PromptLengthMismatchException"/>, or
/// the original's handling under --compat original); grouping units by layer, batching them, and
/// putting results back in the units' order; one hook edit per batch writing each row's clean value
/// (<see cref="HookContext.Patch"/>); the metrics (<see cref="MetricsCalculator"/>); and the plain
/// path's per-unit loop. A family supplies:
/// <list type="bullet">
/// <item><see cref="PrepareRuns"/>: its clean and corrupt runs, keeping what its patched runs start
///   from (the clean run records <see cref="PatchSources"/>);</item>
/// <item><see cref="PatchedLogits"/>: "run from layer l with these patches", logits [N, V];</item>
/// <item>how it batches (<see cref="BatchKey"/>, <see cref="Batches"/>, <see cref="RecomputeFrom"/>;
///   causal decoders get theirs from <see cref="CausalPatchingEngine{TSample}"/>);</item>
/// <item><see cref="PlainLogits"/>: one unit's full recompute, as the original runs it.</item>
/// </list>
/// A method other than exact patching (attribution patching: the clean values, a corrupt run with
/// gradients, one backward pass) builds on the same prepared sample: it keeps its inputs and ids,
/// and nothing in it is made in inference mode.
/// </summary>
public abstract class PatchingEngine<TSample> : IPatchingEngine where TSample : PreparedSample
{
    private string[]? _sources;

    protected PatchingEngine(PatchingOptions? options) => Options = options ?? new PatchingOptions();

    public PatchingOptions Options { get; }
    public abstract int NumLayers { get; }
    public abstract int NumHeads { get; }

    /// <summary>Stops every parameter of <paramref name="model"/> requiring grad: an engine only infers,
    /// and attribution patching's graph starts at the hook points (<see cref="Estimate"/>).</summary>
    protected static void Freeze(torch.nn.Module model)
    {
        foreach (var p in model.parameters()) p.requires_grad = false;
    }

    /// <summary>The sites this family patches.</summary>
    public abstract IReadOnlyList<PatchSite> Sites { get; }

    /// <summary>The family's name in messages ("BLIP").</summary>
    protected abstract string FamilyName { get; }

    /// <summary>What the patched stack is called in messages ("text encoder").</summary>
    protected abstract string StackName { get; }

    /// <summary>Runs the clean and corrupt passes of a sample once and keeps what patches need.</summary>
    public TSample Prepare(PatchingInputs inputs, CorruptionMode mode)
    {
        using var span = NoticeTelemetry.Source.StartActivity("clean and corrupt runs");
        span?.SetTag("notice.mode", mode.ToString().ToLowerInvariant());
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        return PrepareRuns(inputs, mode, ReadPromptIds(inputs, mode));
    }

    /// <summary>
    /// The family's clean and corrupt runs (in a dispose scope, without gradients): the clean run
    /// records <see cref="PatchSources"/> (<see cref="RecordPatchSources"/>); the sample takes what it
    /// keeps out of the scope.
    /// </summary>
    protected abstract TSample PrepareRuns(PatchingInputs inputs, CorruptionMode mode, PromptIds ids);

    /// <summary>Prompt ids for the clean and corrupt runs, and how many positions can be patched.</summary>
    private PromptIds ReadPromptIds(PatchingInputs inputs, CorruptionMode mode)
    {
        var clean = PromptTensor(inputs.CleanIds);
        int t = (int)clean.shape[1];
        if (mode != CorruptionMode.Text) return new PromptIds(clean, clean, t);
        var corrupt = PromptTensor(inputs.CorruptIds ?? throw new ArgumentException("text corruption needs a corrupt prompt"));
        int tc = (int)corrupt.shape[1];
        if (tc == t) return new PromptIds(clean, corrupt, t);
        if (Options.Compat == CompatMode.Default) throw LengthMismatch(t, tc);
        return OriginalMismatchedPrompts(clean, corrupt);
    }

    /// <summary>A prompt's ids [1, T] as the family's runs take them: int64, the sample's own copy.</summary>
    protected virtual Tensor PromptTensor(Tensor ids) => ids.to(ScalarType.Int64).clone();

    /// <summary>The default mode's refusal of a text pair whose prompts differ in token length.</summary>
    protected virtual PromptLengthMismatchException LengthMismatch(int clean, int corrupt) => new(clean, corrupt);

    /// <summary>--compat original: what the original does with prompts of different token lengths.</summary>
    protected abstract PromptIds OriginalMismatchedPrompts(Tensor clean, Tensor corrupt);

    /// <summary>Where a unit's patch goes and where its value comes from (default: the site's own hook point).</summary>
    protected virtual PatchRoute Route(PatchSite site, int layer) => PatchRoute.Same(site, layer);

    /// <summary>Every hook point a patch may read from the clean run: the sources of every site's route at every layer.</summary>
    public IReadOnlyList<string> PatchSources =>
        _sources ??= Sites.SelectMany(s => Enumerable.Range(0, NumLayers).Select(l => Route(s, l).Source)).Distinct().ToArray();

    /// <summary>A hook context for the clean run that records <see cref="PatchSources"/>.</summary>
    protected HookContext RecordPatchSources() => new HookContext().Record([.. PatchSources]);

    /// <summary>Per layer, the value recorded at <paramref name="point"/> of that layer, taken out of
    /// <paramref name="hooks"/> (the caller owns them).</summary>
    protected Tensor[] TakeEveryLayer(HookContext hooks, BlockHook point) =>
        HookName.EveryLayer(point, NumLayers).Select(hooks.Take).ToArray();

    /// <summary>The fast path: units grouped by layer (and <see cref="BatchKey"/>), each group run in
    /// batches (<see cref="Batches"/>). Results come back in the order of <paramref name="units"/>.</summary>
    public UnitResult[] Run(TSample sample, IReadOnlyList<PatchUnit> units)
    {
        Validate(sample, units);
        var results = new UnitResult[units.Count];
        foreach (var group in units.Select((u, i) => (u, i)).GroupBy(x => (x.u.Layer, BatchKey(x.u))))
        {
            foreach (var batch in Batches(sample, group))
            {
                var metrics = RunBatch(sample, group.Key.Layer, batch.Select(x => x.u).ToArray());
                for (int k = 0; k < batch.Length; k++) results[batch[k].i] = new UnitResult(batch[k].u, metrics[k]);
            }
        }
        return results;
    }

    /// <summary>Units of one layer with equal keys may share a batch (default: all of them).</summary>
    protected virtual object? BatchKey(PatchUnit unit) => null;

    /// <summary>One group's units (with their indices) in batches; default: at most BatchSize, in order.</summary>
    protected virtual IEnumerable<(PatchUnit u, int i)[]> Batches(TSample sample, IEnumerable<(PatchUnit u, int i)> units) =>
        units.Chunk(Math.Max(1, Options.BatchSize));

    /// <summary>The first sequence position a batch recomputes; default 0, every position (a bidirectional stack).</summary>
    protected virtual long RecomputeFrom(TSample sample, long[] positions) => 0;

    private PatchMetrics[] RunBatch(TSample sample, int layer, PatchUnit[] units)
    {
        using var span = NoticeTelemetry.Source.StartActivity("patched batch");
        span?.SetTag("notice.layer", layer);
        span?.SetTag("notice.units", units.Length);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var positions = units.Select(u => sample.SequencePosition(u.Position)).ToArray();   // [N]
        long start = RecomputeFrom(sample, positions);
        using var patches = Patches(sample, units, positions, start);
        var logits = PatchedLogits(sample, layer, start, units.Length, patches);             // [N, V]
        return MetricsCalculator.Compute(logits, sample.CleanLogits, sample.CorruptLogits, sample.Inputs.CorrectId, sample.Inputs.IncorrectId);
    }

    /// <summary>
    /// Row r's patch for each unit r: the clean value of its route's source at sequence position
    /// positions[r] (for a head site, that head's slice), written into its route's target at
    /// positions[r] - <paramref name="start"/> (the recomputed positions begin at start).
    /// </summary>
    private HookContext Patches(TSample sample, PatchUnit[] units, long[] positions, long start)
    {
        var hooks = new HookContext();
        var rows = units.Select((u, r) => (u, r, route: Route(u.Site, u.Layer)));
        foreach (var group in rows.GroupBy(x => (x.route.Target, x.route.Source, x.u.Site.PerHead)))
        {
            var (target, source, perHead) = group.Key;
            var clean = sample.Clean.Cache[source][0];                           // [S, D] or [S, H, Dh]
            var pos = torch.tensor(group.Select(x => positions[x.r]).ToArray(), device: clean.device);
            long[]? heads = perHead ? group.Select(x => (long)x.u.Head).ToArray() : null;
            Tensor values = heads is null
                ? clean.index_select(0, pos)                                     // [n, D] or [n, H, Dh]
                : clean.index(TensorIndex.Tensor(pos), TensorIndex.Tensor(torch.tensor(heads, device: clean.device)));   // [n, Dh]
            if (heads is null && HookName.IsPerHead(target) && values.dim() == 2)
                values = values.view(values.shape[0], NumHeads, -1);             // a [D] value written over every head: [n, H, Dh]
            hooks.Patch(target, group.Select(x => (long)x.r).ToArray(), group.Select(x => positions[x.r] - start).ToArray(), heads, values);
        }
        return hooks;
    }

    /// <summary>
    /// Logits [N, V] of N patched runs of one layer: the corrupt run from <paramref name="layer"/> on,
    /// recomputing sequence positions <paramref name="start"/>.. (see <see cref="RecomputeFrom"/>),
    /// with <paramref name="patches"/> (row r carries its unit's patch). Runs in a dispose scope
    /// without gradients.
    /// </summary>
    protected abstract Tensor PatchedLogits(TSample sample, int layer, long start, int rows, HookContext patches);

    /// <summary>
    /// Attribution patching (AtP; Nanda 2023, Kramár et al. 2024): for every unit, the first-order
    /// estimate of its patched run's metrics, (a_clean - a_corrupt) · dM/da at the corrupt run, summed
    /// over the unit's slice (its position, and its head for head sites), where a is the activation at
    /// the unit's route target. One corrupt forward pass with gradients, from the lowest layer asked
    /// (and, for a causal decoder, the earliest position) on, in two rows (row 0 differentiates the
    /// logit gap M = L(tau) - L(tau_inc), row 1 P(tau)), and one backward pass, for all units of all
    /// sites. Model parameters never require grad: the graph starts at the hook points. Estimates:
    /// logit_diff = ΔM, patching_effect = ΔM / (clean gap - corrupt gap), prob_diff = ΔP and
    /// prob_patched = P*(tau) + ΔP (first order, through the softmax). Results come back in the order
    /// of <paramref name="units"/>.
    /// </summary>
    public UnitResult[] Estimate(TSample sample, IReadOnlyList<PatchUnit> units)
    {
        Validate(sample, units);
        if (units.Count == 0) return [];
        using var span = NoticeTelemetry.Source.StartActivity("attribution patching");
        span?.SetTag("notice.units", units.Count);
        using var scope = torch.NewDisposeScope();
        using var grad = torch.enable_grad();
        var positions = units.Select(u => sample.SequencePosition(u.Position)).ToArray();
        long start = RecomputeFrom(sample, positions);
        int layer = units.Min(u => u.Layer);
        var routes = units.Select(u => Route(u.Site, u.Layer)).ToArray();
        var targets = routes.Select(r => r.Target).Distinct().ToArray();
        using var hooks = new HookContext().RecordForGrad(targets);
        var logits = PatchedLogits(sample, layer, start, 2, hooks);                   // [2, V], both rows the corrupt run
        long correct = sample.Inputs.CorrectId, incorrect = sample.Inputs.IncorrectId;
        var gap = logits[0, correct] - logits[0, incorrect];
        var prob = logits[1].to(ScalarType.Float32).softmax(-1)[correct];
        var grads = hooks.Gradients(gap.to(ScalarType.Float32) + prob, targets);        // per target [2, S - start, ...]
        var gradOf = targets.Select((t, i) => (t, g: grads[i])).ToDictionary(x => x.t, x => x.g);

        var gapChange = torch.zeros(units.Count, dtype: ScalarType.Float64);
        var probChange = torch.zeros(units.Count, dtype: ScalarType.Float64);
        foreach (var group in units.Select((u, r) => (u, r, route: routes[r])).GroupBy(x => (x.route.Target, x.route.Source, x.u.Site.PerHead)))
        {
            var (target, source, perHead) = group.Key;
            var clean = sample.Clean.Cache[source][0];                                   // [S, D] or [S, H, Dh]
            var live = hooks.Live[target].detach();                                      // [2, S - start, ...]
            var g = gradOf[target];
            var pos = torch.tensor(group.Select(x => positions[x.r]).ToArray(), device: clean.device);
            var rel = torch.tensor(group.Select(x => positions[x.r] - start).ToArray(), device: live.device);
            Tensor Gather(Tensor t, Tensor at) => perHead
                ? t.index(TensorIndex.Tensor(at), TensorIndex.Tensor(torch.tensor(group.Select(x => (long)x.u.Head).ToArray(), device: t.device)))
                : t.index_select(0, at);
            var values = Gather(clean, pos);                                             // [n, D], [n, H, Dh] or [n, Dh]
            var corrupt = Gather(live[0], rel);
            if (!perHead && corrupt.dim() == 3 && values.dim() == 2) values = values.view(values.shape[0], NumHeads, -1);
            var delta = (values.to(ScalarType.Float64, corrupt.device) - corrupt.to(ScalarType.Float64)).flatten(1);   // [n, slice]
            var index = torch.tensor(group.Select(x => (long)x.r).ToArray());
            gapChange.index_copy_(0, index, (delta * Gather(g[0], rel).to(ScalarType.Float64).flatten(1)).sum(1).cpu());
            probChange.index_copy_(0, index, (delta * Gather(g[1], rel).to(ScalarType.Float64).flatten(1)).sum(1).cpu());
        }
        var metrics = MetricsCalculator.Estimates(gapChange, probChange, sample.Baseline);
        return units.Select((u, r) => new UnitResult(u, metrics[r])).ToArray();
    }

    /// <summary>
    /// The plain path: for each unit, the whole model again as the original trace_with_patch runs it
    /// (<see cref="PlainLogits"/>). Slow on purpose: the reference every fast-path optimisation is
    /// checked against. Results come back in the order of <paramref name="units"/>.
    /// </summary>
    public UnitResult[] RunPlain(TSample sample, IReadOnlyList<PatchUnit> units)
    {
        Validate(sample, units);
        var results = new UnitResult[units.Count];
        for (int k = 0; k < units.Count; k++)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var (patched, clean, corrupt) = PlainLogits(sample, units[k]);
            var metrics = MetricsCalculator.Compute(patched, clean, corrupt, sample.Inputs.CorrectId, sample.Inputs.IncorrectId);
            results[k] = new UnitResult(units[k], metrics[0]);
        }
        return results;
    }

    /// <summary>One unit's full recompute (in a dispose scope, without gradients): the patched run's
    /// logits [1, V] and the clean and corrupt runs' [V] (or [1, V]) that run computed alongside.</summary>
    protected abstract (Tensor Patched, Tensor Clean, Tensor Corrupt) PlainLogits(TSample sample, PatchUnit unit);

    private void Validate(TSample sample, IReadOnlyList<PatchUnit> units)
    {
        foreach (var u in units)
        {
            if (!Sites.Contains(u.Site))
                throw new ArgumentException($"site '{u.Site.Name}' ({u.Site.HookPoint}) is not a {FamilyName} site; {FamilyName} has {string.Join(", ", Sites.Select(s => s.Name))}");
            if (u.Layer < 0 || u.Layer >= NumLayers)
                throw new ArgumentOutOfRangeException(nameof(units), $"layer {u.Layer} is out of range: the {StackName} has layers 0..{NumLayers - 1}");
            if (u.Site.PerHead && (u.Head < 0 || u.Head >= NumHeads))
                throw new ArgumentOutOfRangeException(nameof(units), $"head {u.Head} is out of range: layers have heads 0..{NumHeads - 1}");
            if (u.Position < 0 || u.Position >= sample.Positions)
                throw new ArgumentOutOfRangeException(nameof(units), $"position {u.Position} is out of range: the prompt has positions 0..{sample.Positions - 1}{PositionsNote}");
            ValidatePosition(sample, u);
        }
    }

    /// <summary>What positions count, after "the prompt has positions 0..T-1" in messages.</summary>
    protected virtual string PositionsNote => "";

    /// <summary>A family's own check of a unit's position (throws <see cref="ArgumentOutOfRangeException"/>).</summary>
    protected virtual void ValidatePosition(TSample sample, PatchUnit unit) { }

    IPreparedSample IPatchingEngine.Prepare(PatchingInputs inputs, CorruptionMode mode) => Prepare(inputs, mode);
    UnitResult[] IPatchingEngine.Run(IPreparedSample sample, IReadOnlyList<PatchUnit> units) => Run(Own(sample), units);
    UnitResult[] IPatchingEngine.RunPlain(IPreparedSample sample, IReadOnlyList<PatchUnit> units) => RunPlain(Own(sample), units);
    UnitResult[] IPatchingEngine.Estimate(IPreparedSample sample, IReadOnlyList<PatchUnit> units) => Estimate(Own(sample), units);

    private static TSample Own(IPreparedSample sample) =>
        sample as TSample ?? throw new ArgumentException($"a {sample.GetType().Name} was prepared by another engine", nameof(sample));

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees what the engine keeps across samples (per-image caches).</summary>
    protected virtual void Dispose(bool disposing) { }
}
