using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Hooks;

/// <summary>
/// What one forward pass should do at its named hook points (TransformerLens' idea, without
/// global state): record activations into <see cref="Cache"/>, and edit them on the way through.
/// A model calls <see cref="Run"/> at each hook point; with no context passed, hooks cost nothing.
///
/// Hook names (one scheme for every model, see design.md §2):
///   vision.blocks.{l}.resid_post, vision.blocks.{l}.attn.pattern
///   text.embed, text.blocks.{l}.resid_pre, text.blocks.{l}.attn.z [B,T,H,Dh], .attn.pattern [B,H,T,T],
///   .attn.out, .cross.z, .cross.pattern, .cross.out, .mlp.out, .resid_post   (BLIP text encoder)
///   decoder.blocks.{l}.*                                                      (BLIP answer decoder)
///   LLaVA: vision.embed, projector.in, projector.hidden, projector.out (the image features),
///   text.embed (the merged sequence), text.blocks.{l}.* without cross (the language model;
///   .attn.pattern [B,H,T,S] over cached and new positions), text.final_norm (the final RMSNorm's
///   output: transformers' last hidden state)
/// Code names hook points through <see cref="HookName"/>, never by typing them.
/// </summary>
public sealed class HookContext : IDisposable
{
    private readonly HashSet<string> _record = new(StringComparer.Ordinal);
    private Func<string, bool>? _recordWhere;
    private readonly Dictionary<string, List<Func<Tensor, Tensor>>> _edits = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tensor> _cache = new(StringComparer.Ordinal);
    private readonly HashSet<string> _forGrad = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tensor> _live = new(StringComparer.Ordinal);

    /// <summary>Recorded activations (detached copies, owned by this context until it is disposed).</summary>
    public IReadOnlyDictionary<string, Tensor> Cache => _cache;

    public HookContext Record(params string[] names)
    {
        foreach (var n in names) _record.Add(n);
        return this;
    }

    public HookContext RecordWhere(Func<string, bool> predicate)
    {
        var previous = _recordWhere;
        _recordWhere = previous is null ? predicate : n => previous(n) || predicate(n);
        return this;
    }

    /// <summary>
    /// Keeps the live activation at each of <paramref name="names"/> (not a copy) so that gradients
    /// can be taken with respect to it after the pass (<see cref="Gradients"/>): attribution patching.
    /// An activation that does not require grad yet (nothing before it does: model parameters never
    /// require grad) is made a leaf that does, so the pass records a graph from the first such hook
    /// point on and nothing upstream of it. Run the pass with gradients enabled (torch.enable_grad()).
    /// The context holds the live tensors (out of any dispose scope) until it is disposed.
    /// </summary>
    public HookContext RecordForGrad(params string[] names)
    {
        foreach (var n in names) _forGrad.Add(n);
        return this;
    }

    /// <summary>The live activations kept by <see cref="RecordForGrad"/> (part of the autograd graph).</summary>
    public IReadOnlyDictionary<string, Tensor> Live => _live;

    /// <summary>
    /// d<paramref name="output"/>/d(activation) at each of <paramref name="names"/> (recorded with
    /// <see cref="RecordForGrad"/>), shaped like the activation, from one backward pass. The output
    /// must depend on each of them (an error otherwise).
    /// </summary>
    public Tensor[] Gradients(Tensor output, IReadOnlyList<string> names)
    {
        var inputs = names.Select(n => _live.TryGetValue(n, out var t) ? t
            : throw new KeyNotFoundException($"hook point '{n}' was not reached by the pass that recorded it for gradients")).ToArray();
        return torch.autograd.grad([output], inputs).ToArray();
    }

    /// <summary>Replaces the activation at <paramref name="name"/> with what <paramref name="edit"/> returns
    /// (it may modify its argument in place and return it).</summary>
    public HookContext Edit(string name, Func<Tensor, Tensor> edit)
    {
        if (!_edits.TryGetValue(name, out var list)) _edits[name] = list = new();
        list.Add(edit);
        return this;
    }

    /// <summary>Writes <paramref name="values"/> into the activation at <paramref name="name"/>, one
    /// row per patch: activation[rows[i], positions[i], (heads[i],)] = values[i]. For per-head hook
    /// points ([B,T,H,Dh]) pass heads; for whole-module points ([B,T,D]) pass none.</summary>
    public HookContext Patch(string name, long[] rows, long[] positions, long[]? heads, Tensor values)
    {
        if (rows.Length != positions.Length || (heads is not null && heads.Length != rows.Length))
            throw new ArgumentException("rows, positions and heads must have one entry per patch");
        return Edit(name, x =>
        {
            using var r = torch.tensor(rows, device: x.device);
            using var p = torch.tensor(positions, device: x.device);
            using var v = values.to(x.dtype, x.device);
            if (heads is null)
            {
                x.index_put_(v, r, p);
            }
            else
            {
                using var h = torch.tensor(heads, device: x.device);
                x.index_put_(v, r, p, h);
            }
            return x;
        });
    }

    public bool Wants(string name) => _edits.ContainsKey(name) || _record.Contains(name) || _forGrad.Contains(name) || (_recordWhere?.Invoke(name) ?? false);

    /// <summary>Called by models at each hook point.</summary>
    public Tensor Run(string name, Tensor x)
    {
        if (_edits.TryGetValue(name, out var edits))
            foreach (var e in edits) x = e(x);
        if (_record.Contains(name) || (_recordWhere?.Invoke(name) ?? false))
        {
            if (_cache.Remove(name, out var old)) old.Dispose();
            var copy = x.detach().clone();
            copy.DetachFromDisposeScope();
            _cache[name] = copy;
        }
        if (_forGrad.Contains(name))
        {
            if (!x.requires_grad) x = x.detach().requires_grad_(true);
            // Models free their intermediates with dispose scopes; the context keeps this handle alive
            // until it is disposed (the tensor flows on unchanged).
            x.DetachFromDisposeScope();
            if (_live.Remove(name, out var old) && !ReferenceEquals(old, x)) old.Dispose();
            _live[name] = x;
        }
        return x;
    }

    /// <summary>Takes a recorded tensor out of the cache; the caller owns it.</summary>
    public Tensor Take(string name)
    {
        if (!_cache.Remove(name, out var t)) throw new KeyNotFoundException($"hook point '{name}' was not recorded");
        return t;
    }

    public void Dispose()
    {
        foreach (var t in _cache.Values) t.Dispose();
        _cache.Clear();
        foreach (var t in _live.Values) t.Dispose();
        _live.Clear();
    }
}

/// <summary>Extension that lets model code write <c>x = hooks.At(name, x)</c> with a null context.</summary>
public static class HookContextExtensions
{
    public static Tensor At(this HookContext? hooks, string name, Tensor x) =>
        hooks is not null && hooks.Wants(name) ? hooks.Run(name, x) : x;
}
