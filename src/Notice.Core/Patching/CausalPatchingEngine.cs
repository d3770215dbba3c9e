using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>How a prompt's input positions (the image token counted once, as results count them) sit
/// in the sequence a decoder reads, where the image's N features take the image token's place.</summary>
/// <param name="ImagePosition">the input index of the image token; -1 when there is none</param>
/// <param name="ImageFeatures">N, the image features in its place</param>
/// <param name="Length">the corrupt run's sequence length S (where patched runs end)</param>
public sealed record SequenceLayout(int ImagePosition, int ImageFeatures, int Length)
{
    /// <summary>The sequence position of input position <paramref name="position"/> (a text token).</summary>
    public long SequencePosition(int position) =>
        ImagePosition < 0 || position < ImagePosition ? position : position + ImageFeatures - 1;
}

/// <summary>What a causal decoder's corrupt run leaves for patched runs that restart inside it. The
/// run owns its tensors (none in a dispose scope).</summary>
public sealed class CausalCorruptRun : IDisposable
{
    public CausalCorruptRun(Tensor[] residPre, KeyValueCache[] cache, Tensor positionIds)
    {
        foreach (var t in residPre) t.DetachFromDisposeScope();
        foreach (var kv in cache) { kv.Keys.DetachFromDisposeScope(); kv.Values.DetachFromDisposeScope(); }
        positionIds.DetachFromDisposeScope();
        ResidPre = residPre;
        Cache = cache;
        PositionIds = positionIds;
    }

    /// <summary>Per layer, the residual stream entering it [1, S, D].</summary>
    public Tensor[] ResidPre { get; }
    /// <summary>Per layer, the keys and values of every position [1, KV heads, S, Dh].</summary>
    public KeyValueCache[] Cache { get; }
    /// <summary>The rotary position ids of every position, sequence last: [1, S] (LLaMA), [3, 1, S] (M-RoPE).</summary>
    public Tensor PositionIds { get; }

    public void Dispose()
    {
        foreach (var t in ResidPre) t.Dispose();
        foreach (var kv in Cache) kv.Dispose();
        PositionIds.Dispose();
    }
}

/// <summary>A causal decoder's prepared sample: the corrupt run to restart from, and where input
/// positions sit in the sequence. A family adds what its plain path needs (LLaVA: the noisy features).</summary>
public class CausalPreparedSample(
    PatchingInputs inputs, CorruptionMode mode, PromptIds ids, HookContext clean, Tensor cleanLogits, Tensor corruptLogits,
    CausalCorruptRun corrupt, SequenceLayout layout)
    : PreparedSample(inputs, mode, ids, clean, cleanLogits, corruptLogits)
{
    public CausalCorruptRun Corrupt { get; } = corrupt;
    public SequenceLayout Layout { get; } = layout;

    public override long SequencePosition(int position) => Layout.SequencePosition(position);

    protected override void Dispose(bool disposing)
    {
        if (disposing) Corrupt.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>
/// Patching on a causal decoder (LLaVA's LLaMA; Qwen2.5-VL's decoder, M-RoPE position ids and all,
/// plugs in the same way). A patch at (layer l, position p) leaves every position before p and every
/// layer below l as in the corrupt run, so its run starts from the corrupt stream entering layer l
/// and recomputes only positions p.., attending to the corrupt keys/values cut to p (design.md §4).
/// Units of one layer share a forward pass, each batch row its own patch, the one-row cache serving
/// every row; batches take the latest positions first, so each one's recomputed tail stays short.
/// A family supplies its runs (<see cref="PatchingEngine{TSample}.PrepareRuns"/>, through
/// <see cref="CleanRun"/> and <see cref="CorruptRun"/>), its decoder (<see cref="Decode"/>) and its
/// plain path.
/// </summary>
public abstract class CausalPatchingEngine<TSample>(PatchingOptions? options) : PatchingEngine<TSample>(options)
    where TSample : CausalPreparedSample
{
    /// <summary>
    /// The family's decoder: layers [<paramref name="fromLayer"/>, L) on <paramref name="hidden"/>
    /// [B, T, D] (the stream entering fromLayer) at rotary positions <paramref name="positionIds"/>
    /// (sequence last), after the positions of <paramref name="past"/> (per layer; one row serves
    /// every row; null: none), then the final norm and the LM head at the last position.
    /// </summary>
    /// <returns>logits [B, V]; with <paramref name="useCache"/> (fromLayer 0) each layer's keys and values of every position</returns>
    protected abstract (Tensor Logits, KeyValueCache[]? Cache) Decode(
        Tensor hidden, Tensor positionIds, IReadOnlyList<KeyValueCache>? past, HookContext? hooks, int fromLayer, bool useCache);

    /// <summary>What the image token is called in messages.</summary>
    protected virtual string ImageToken => "image";

    /// <summary>The clean run over the input embeddings [1, S, D]: its logits [1, V] and every value a
    /// patch may read (<see cref="PatchingEngine{TSample}.PatchSources"/>).</summary>
    protected (Tensor Logits, HookContext Values) CleanRun(Tensor embeds, Tensor positionIds)
    {
        var values = RecordPatchSources();
        return (Decode(embeds, positionIds, null, values, 0, useCache: false).Logits, values);
    }

    /// <summary>The corrupt run over the input embeddings [1, S, D]: its logits [1, V], and the stream
    /// entering each layer and its keys/values, where patched runs restart.</summary>
    protected (Tensor Logits, CausalCorruptRun Run) CorruptRun(Tensor embeds, Tensor positionIds)
    {
        using var hooks = new HookContext().Record(HookName.EveryLayer(BlockHook.ResidPre, NumLayers));
        var (logits, cache) = Decode(embeds, positionIds, null, hooks, 0, useCache: true);
        return (logits, new CausalCorruptRun(TakeEveryLayer(hooks, BlockHook.ResidPre), cache!, positionIds));
    }

    /// <summary>
    /// Units of one layer in batches, latest positions first: a batch recomputes from its earliest
    /// position to the end, so batching neighbouring positions keeps that tail short. At most
    /// BatchSize rows and BatchTokens rows x tail positions per batch.
    /// </summary>
    protected override IEnumerable<(PatchUnit u, int i)[]> Batches(TSample sample, IEnumerable<(PatchUnit u, int i)> units)
    {
        var batch = new List<(PatchUnit u, int i)>();
        foreach (var x in units.OrderByDescending(x => x.u.Position))
        {
            long tail = sample.Layout.Length - sample.SequencePosition(x.u.Position);
            if (batch.Count > 0 && (batch.Count >= Math.Max(1, Options.BatchSize) || (batch.Count + 1) * tail > Options.BatchTokens))
            {
                yield return batch.ToArray();
                batch.Clear();
            }
            batch.Add(x);
        }
        if (batch.Count > 0) yield return batch.ToArray();
    }

    /// <summary>Positions before a batch's earliest patch are those of the corrupt run: not recomputed.</summary>
    protected sealed override long RecomputeFrom(TSample sample, long[] positions) => positions.Min();

    /// <summary>The KV-cut restart: the corrupt stream entering <paramref name="layer"/> at positions
    /// start..S-1, attending to the corrupt keys/values of positions 0..start-1.</summary>
    protected sealed override Tensor PatchedLogits(TSample sample, int layer, long start, int rows, HookContext patches)
    {
        var corrupt = sample.Corrupt;
        long length = sample.Layout.Length - start;
        var hidden = corrupt.ResidPre[layer].narrow(1, start, length).expand(rows, -1, -1);   // [N, S - start, D]
        var positionIds = corrupt.PositionIds.narrow(-1, start, length);                     // [..., 1, S - start]
        var past = corrupt.Cache.Select(kv => kv.Narrow(start)).ToArray();                   // per layer [1, KV heads, start, Dh]
        return Decode(hidden, positionIds, past, patches, layer, useCache: false).Logits;    // [N, V]
    }

    protected override string PositionsNote => $" (input ids, {ImageToken} counted once)";

    protected override void ValidatePosition(TSample sample, PatchUnit unit)
    {
        if (unit.Position == sample.Layout.ImagePosition)
            throw new ArgumentOutOfRangeException("units", $"position {unit.Position} is the {ImageToken} token, whose {sample.Layout.ImageFeatures} image features are not a text position to patch");
    }
}
