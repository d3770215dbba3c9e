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
/// The sizes and biases of a Llama-style decoder, whichever family's config they come from
/// (LLaVA's <see cref="LlamaConfig"/>, Qwen2.5-VL's QwenConfig).
/// </summary>
/// <param name="QkvBias">biases on q_proj, k_proj and v_proj (LLaMA: attention_bias; Qwen2: always)</param>
/// <param name="OutBias">a bias on o_proj (LLaMA: attention_bias; Qwen2: never)</param>
/// <param name="MlpBias">biases on gate_proj, up_proj and down_proj</param>
public sealed record DecoderConfig(int VocabSize, int HiddenSize, int IntermediateSize, int NumHiddenLayers,
    int NumAttentionHeads, int NumKeyValueHeads, string HiddenAct, double RmsNormEps, bool QkvBias, bool OutBias, bool MlpBias)
{
    public int HeadDim => HiddenSize / NumAttentionHeads;
}

/// <summary>
/// A Llama-style decoder as transformers computes it (eager attention): token embeddings; decoder
/// layers of RMSNorm, rotary self-attention, residual, RMSNorm, SiLU-gated MLP, residual; a final
/// RMSNorm. LLaVA's LlamaModel (4.41) and Qwen2.5-VL's Qwen2_5_VLModel (4.49) are both this loop:
/// they differ in the rotary angles, passed in as <see cref="RotaryPositions"/> (1-D RoPE over
/// [B, T] position ids; M-RoPE over [3, B, T]), and in the biases (<see cref="DecoderConfig"/>).
/// Hook points per layer l: "text.blocks.{l}.resid_pre", the attention's (see
/// <see cref="LlamaAttention"/>), "text.blocks.{l}.mlp.out", "text.blocks.{l}.resid_post" (the
/// layer's raw output, before any final norm), and "text.final_norm" (the final norm's output,
/// transformers' last hidden state).
/// Not reproduced: the sliding window of Qwen2's 4.49 mask (config sliding_window, 32768 in the real
/// checkpoints), which transformers applies even with use_sliding_window false, but only to
/// sequences longer than the window.
/// </summary>
public sealed class LlamaModel : nn.Module
{
    private static readonly string FinalNormHook = HookName.FinalNorm(HookName.Text);
    private readonly Embedding _embedTokens;
    private readonly ModuleList<LlamaDecoderLayer> _layers;
    private readonly RmsNorm _norm;
    private readonly RotaryPositions _rotary;

    public DecoderConfig Config { get; }
    public int NumLayers => _layers.Count;

    /// <summary>The embedding table [V, D] (also the LM head when the family ties them).</summary>
    public Tensor EmbeddingWeight => _embedTokens.weight!;

    internal LlamaModel(DecoderConfig config, RotaryPositions rotary, Placement at) : base("model")
    {
        Config = config;
        _rotary = rotary;
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
    /// <param name="positionIds">rotary positions of the T positions, sequence last: [B, T] for
    /// LLaMA, [3, B, T] for M-RoPE; a restarted run passes the stored ids narrowed on the last axis</param>
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
        if (positionIds.shape[^1] != hidden.shape[1])
            throw new ArgumentException($"position ids of shape [{string.Join(", ", positionIds.shape)}] for {hidden.shape[1]} positions; the last axis is the sequence", nameof(positionIds));

        long pastLength = past is null || fromLayer == _layers.Count ? 0 : past[fromLayer].Length;
        using var mask = AttentionMask(attentionMask, hidden.shape[1], pastLength, hidden.device);   // [B or 1, 1, T, S]
        var angles = _rotary(positionIds.to(hidden.device), hidden.dtype);                              // [B, 1, T, Dh]
        var cache = useCache ? new KeyValueCache[_layers.Count] : null;
        var x = hidden;
        for (int l = fromLayer; l < _layers.Count; l++)
        {
            (x, var layerCache) = _layers[l].Forward(x, angles, mask, past?[l], hooks, useCache);      // [B, T, D]
            if (cache is not null) cache[l] = layerCache!;
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

    public LlamaDecoderLayer(DecoderConfig c, int layer, Placement at) : base($"layers.{layer}")
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

    /// <summary>The layer's output [B, T, D], and its cache extended by the T positions when <paramref name="returnCache"/>.</summary>
    public (Tensor Output, KeyValueCache? Cache) Forward(Tensor x, RotaryAngles angles, Tensor? mask, KeyValueCache? past, HookContext? hooks, bool returnCache)
    {
        // The layer's intermediates are freed when it is done, not when the whole pass is: a long
        // prompt through many layers would otherwise hold every layer's activations at once.
        using var scope = torch.NewDisposeScope();
        x = hooks.At(_residPreHook, x);
        var (attn, cache) = _attn.Forward(_inputNorm.Forward(x), angles, mask, past, hooks, returnCache);   // [B, T, D]
        var h = x + attn;
        var mlp = hooks.At(_mlpHook, _mlp.Forward(_postAttentionNorm.Forward(h)));
        var output = hooks.At(_residPostHook, h + mlp);
        // An unwanted cache is freed with the layer's other intermediates.
        if (!returnCache || cache is null) return (output.MoveToOuterDisposeScope(), null);
        cache.Keys.MoveToOuterDisposeScope();
        cache.Values.MoveToOuterDisposeScope();
        return (output.MoveToOuterDisposeScope(), cache);
    }
}

/// <summary>LlamaMLP (and Qwen2MLP): down(act(gate(x)) * up(x)), act = SiLU for both.</summary>
internal sealed class LlamaMlp : nn.Module
{
    private readonly Linear _gate, _up, _down;
    private readonly string _act;

    public LlamaMlp(DecoderConfig c, Placement at) : base("mlp")
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
    private readonly double _eps;

    public RmsNorm(int size, double eps, Placement at) : base("norm")
    {
        _eps = eps;
        register_parameter("weight", new Parameter(torch.ones(size, dtype: at.DType, device: at.Device)));
    }

    public Tensor Forward(Tensor x)
    {
        var h = x.to(x.dtype == ScalarType.Float64 ? x.dtype : ScalarType.Float32);   // float64 stays float64
        var variance = h.pow(2).mean(new long[] { -1 }, keepdim: true);
        // The registered parameter, not a field: converting the module (m.to(dtype)) replaces it.
        return get_parameter("weight")! * (h * torch.rsqrt(variance + _eps)).to(x.dtype);
    }
}
