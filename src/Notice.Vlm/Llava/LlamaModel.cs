using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>What <see cref="LlamaModel.Forward"/> computed.</summary>
/// <param name="LastHiddenState">[B, T, D] after the final norm (transformers' last_hidden_state)</param>
/// <param name="Cache">per layer, keys/values of the past and the T new positions; null unless asked for</param>
public sealed record LlamaOutput(Tensor LastHiddenState, KeyValueCache[]? Cache);

/// <summary>
/// LlamaModel as transformers 4.41 computes it (eager attention): token embeddings; decoder layers
/// of RMSNorm, rotary self-attention, residual, RMSNorm, SiLU-gated MLP, residual; a final RMSNorm.
/// Hook points per layer l: "text.blocks.{l}.resid_pre", the attention's (see
/// <see cref="LlamaAttention"/>), "text.blocks.{l}.mlp.out", "text.blocks.{l}.resid_post" (the
/// layer's raw output, before any final norm), and "text.final_norm" (the final norm's output,
/// transformers' last hidden state).
/// </summary>
public sealed class LlamaModel : nn.Module
{
    private static readonly string FinalNormHook = HookName.FinalNorm(HookName.Text);
    private readonly Embedding _embedTokens;
    private readonly ModuleList<LlamaDecoderLayer> _layers;
    private readonly RmsNorm _norm;

    public LlamaConfig Config { get; }
    public int NumLayers => _layers.Count;

    internal LlamaModel(LlamaConfig config, Placement at) : base("model")
    {
        Config = config;
        _embedTokens = nn.Embedding(config.VocabSize, config.HiddenSize, device: at.Device, dtype: at.DType);
        _layers = new ModuleList<LlamaDecoderLayer>();
        for (int l = 0; l < config.NumHiddenLayers; l++) _layers.Add(new LlamaDecoderLayer(config, l, at));
        _norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, at);
        register_module("embed_tokens", _embedTokens);
        register_module("layers", _layers);
        register_module("norm", _norm);
    }

    /// <summary>Token embeddings [B, T, D].</summary>
    public Tensor Embed(Tensor inputIds) => _embedTokens.forward(inputIds);

    /// <summary>
    /// Runs layers [<paramref name="fromLayer"/>, L) on <paramref name="hidden"/> [B, T, D], the
    /// residual stream entering fromLayer (the input embeddings for 0), then the final norm.
    /// </summary>
    /// <param name="positionIds">[B, T] rotary positions of the T positions</param>
    /// <param name="attentionMask">[B, S] over every key position, cached ones first then the T new
    /// ones (1 attend, 0 padding); null masks nothing but the future. The new positions are the cache
    /// positions past..S-1, which decides the causal part.</param>
    /// <param name="past">per layer, keys/values of the S - T positions before these (a one-row
    /// cache serves every row); null when there are none. Positions before a patched one are the
    /// same as in the run that made the cache, so a patched run recomputes only from there on.</param>
    /// <param name="useCache">also return each layer's cache extended by the new positions; needs
    /// a pass over every layer (<paramref name="fromLayer"/> 0)</param>
    /// <remarks>Hook points see the T computed positions only (index i is cache position past + i).</remarks>
    public LlamaOutput Forward(Tensor hidden, Tensor positionIds, Tensor? attentionMask = null,
        IReadOnlyList<KeyValueCache>? past = null, HookContext? hooks = null, int fromLayer = 0, bool useCache = false)
    {
        if (fromLayer < 0 || fromLayer > _layers.Count)
            throw new ArgumentOutOfRangeException(nameof(fromLayer), $"the model has {_layers.Count} layers");
        if (useCache && fromLayer != 0)
            throw new ArgumentException("a cache is built by a pass over every layer: useCache needs fromLayer 0", nameof(useCache));
        if (past is not null && past.Count != _layers.Count)
            throw new ArgumentException($"the cache has {past.Count} layers, the model {_layers.Count}", nameof(past));

        long pastLength = past is null || fromLayer == _layers.Count ? 0 : past[fromLayer].Length;
        using var mask = AttentionMask(attentionMask, hidden.shape[1], pastLength, hidden.device);
        var angles = RotaryAngles.For(positionIds.to(hidden.device), Config.HeadDim, Config.RopeTheta, hidden.dtype);
        var cache = useCache ? new KeyValueCache[_layers.Count] : null;
        var x = hidden;
        for (int l = fromLayer; l < _layers.Count; l++)
        {
            (x, var layerCache) = _layers[l].Forward(x, angles, mask, past?[l], hooks, useCache);
            if (cache is not null) cache[l] = layerCache!;
            else layerCache?.Dispose();   // not wanted: free the keys/values now rather than at the end of the scope
        }
        return new LlamaOutput(hooks.At(FinalNormHook, _norm.Forward(x)), cache);
    }

    /// <summary>
    /// transformers 4.41's 4D mask, additive float32 [B or 1, 1, T, S]: 0 where query i (cache
    /// position past + i) may attend key j, float32 min where j is in its future or a padding
    /// position. A padding query has every key masked, so it attends uniformly to all of them, as in
    /// transformers (only the padding rows' own states see this). Null when nothing is masked.
    /// </summary>
    public static Tensor? AttentionMask(Tensor? attentionMask, long queries, long past, Device device)
    {
        long keys = past + queries;
        if (attentionMask is null && queries == 1) return null;
        using var scope = torch.NewDisposeScope();
        var keyPositions = torch.arange(keys, dtype: ScalarType.Int64, device: device);
        var queryPositions = torch.arange(past, keys, dtype: ScalarType.Int64, device: device).unsqueeze(-1);
        var masked = keyPositions.gt(queryPositions).view(1, 1, queries, keys);
        if (attentionMask is not null)
        {
            if (attentionMask.dim() != 2 || attentionMask.shape[1] != keys)
                throw new ArgumentException($"attention mask of shape [{string.Join(", ", attentionMask.shape)}]; expected [B, {keys}] (cached + new positions)");
            masked = masked.logical_or(attentionMask.to(device).eq(0).view(attentionMask.shape[0], 1, 1, keys));
        }
        return torch.zeros(masked.shape, ScalarType.Float32, device).masked_fill(masked, float.MinValue).MoveToOuterDisposeScope();
    }
}

internal sealed class LlamaDecoderLayer : nn.Module
{
    private readonly LlamaAttention _attn;
    private readonly LlamaMlp _mlp;
    private readonly RmsNorm _inputNorm, _postAttentionNorm;
    private readonly string _residPreHook, _mlpHook, _residPostHook;

    public LlamaDecoderLayer(LlamaConfig c, int layer, Placement at) : base($"layers.{layer}")
    {
        _attn = new LlamaAttention(c, layer, at);
        _mlp = new LlamaMlp(c, at);
        _inputNorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, at);
        _postAttentionNorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, at);
        _residPreHook = HookName.ResidPre(layer);
        _mlpHook = HookName.MlpOut(layer);
        _residPostHook = HookName.ResidPost(layer);
        register_module("self_attn", _attn);
        register_module("mlp", _mlp);
        register_module("input_layernorm", _inputNorm);
        register_module("post_attention_layernorm", _postAttentionNorm);
    }

    public (Tensor Output, KeyValueCache? Cache) Forward(Tensor x, RotaryAngles angles, Tensor? mask, KeyValueCache? past, HookContext? hooks, bool returnCache)
    {
        // The layer's intermediates are freed when it is done, not when the whole pass is: a long
        // prompt through many layers would otherwise hold every layer's activations at once.
        using var scope = torch.NewDisposeScope();
        x = hooks.At(_residPreHook, x);
        var (attn, cache) = _attn.Forward(_inputNorm.Forward(x), angles, mask, past, hooks, returnCache);
        var h = x + attn;
        var mlp = hooks.At(_mlpHook, _mlp.Forward(_postAttentionNorm.Forward(h)));
        var output = hooks.At(_residPostHook, h + mlp);
        cache?.Keys.MoveToOuterDisposeScope();
        cache?.Values.MoveToOuterDisposeScope();
        return (output.MoveToOuterDisposeScope(), cache);
    }
}

/// <summary>LlamaMLP: down(act(gate(x)) * up(x)), act = SiLU for LLaMA.</summary>
internal sealed class LlamaMlp : nn.Module
{
    private readonly Linear _gate, _up, _down;
    private readonly string _act;

    public LlamaMlp(LlamaConfig c, Placement at) : base("mlp")
    {
        _gate = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: c.MlpBias, device: at.Device, dtype: at.DType);
        _up = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: c.MlpBias, device: at.Device, dtype: at.DType);
        _down = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: c.MlpBias, device: at.Device, dtype: at.DType);
        _act = c.HiddenAct;
        register_module("gate_proj", _gate);
        register_module("up_proj", _up);
        register_module("down_proj", _down);
    }

    public Tensor Forward(Tensor x) => _down.forward(Activations.Apply(_act, _gate.forward(x)) * _up.forward(x));
}

/// <summary>LlamaRMSNorm: w * (x * rsqrt(mean(x^2) + eps)), normalised in float32 whatever the model's dtype.</summary>
internal sealed class RmsNorm : nn.Module
{
    private readonly Parameter _weight;
    private readonly double _eps;

    public RmsNorm(int size, double eps, Placement at) : base("norm")
    {
        _weight = new Parameter(torch.ones(size, dtype: at.DType, device: at.Device));
        _eps = eps;
        register_parameter("weight", _weight);
    }

    public Tensor Forward(Tensor x)
    {
        var h = x.to(x.dtype == ScalarType.Float64 ? x.dtype : ScalarType.Float32);   // float64 stays float64
        var variance = h.pow(2).mean(new long[] { -1 }, keepdim: true);
        return _weight * (h * torch.rsqrt(variance + _eps)).to(x.dtype);
    }
}
