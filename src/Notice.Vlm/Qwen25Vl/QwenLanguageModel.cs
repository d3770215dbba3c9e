using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>
/// Qwen2_5_VLModel, the language model of Qwen2.5-VL (a Qwen2 decoder), as transformers 4.49
/// computes it with eager attention: token embeddings; layers of RMSNorm, M-RoPE self-attention
/// (<see cref="LlamaAttention"/> with q/k/v biases), residual, RMSNorm, SiLU-gated MLP, residual; a final RMSNorm.
/// Same shape of API as <see cref="LlamaModel"/>, position ids [3, B, T] instead of [B, T]. Hook
/// points per layer l: "text.blocks.{l}.resid_pre", the attention's, "text.blocks.{l}.mlp.out",
/// "text.blocks.{l}.resid_post" (the raw layer output), and "text.final_norm".
/// Not reproduced: the 4.49 mask's sliding window (config sliding_window, 32768 in the real
/// checkpoints), which transformers applies even with use_sliding_window false, but only to
/// sequences longer than the window.
/// </summary>
public sealed class QwenLanguageModel : nn.Module
{
    private readonly Embedding _embedTokens;
    private readonly ModuleList<QwenDecoderLayer> _layers;
    private readonly RmsNorm _norm;

    public QwenConfig Config { get; }
    public int NumLayers => _layers.Count;

    /// <summary>The embedding table [V, D] (also the LM head when tie_word_embeddings).</summary>
    public Tensor EmbeddingWeight => _embedTokens.weight!;

    internal QwenLanguageModel(QwenConfig config, Placement at) : base("model")
    {
        Config = config;
        _embedTokens = nn.Embedding(config.VocabSize, config.HiddenSize, device: at.Device, dtype: at.DType);
        _layers = new ModuleList<QwenDecoderLayer>();
        for (int l = 0; l < config.NumHiddenLayers; l++) _layers.Add(new QwenDecoderLayer(config, l, at));
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
    /// <param name="positionIds">[3, B, T] M-RoPE positions of the T positions; a restarted run
    /// passes the stored ids narrowed on the last axis</param>
    /// <param name="attentionMask">[B, S] over every key position, cached ones first then the T new
    /// ones (1 attend, 0 padding); null masks nothing but the future</param>
    /// <param name="past">per layer, keys/values of the S - T positions before these (a one-row
    /// cache serves every row); null when there are none</param>
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
        if (positionIds.dim() != 3 || positionIds.shape[0] != 3 || positionIds.shape[2] != hidden.shape[1])
            throw new ArgumentException($"position ids of shape [{string.Join(", ", positionIds.shape)}]; expected [3, B, {hidden.shape[1]}]", nameof(positionIds));

        long pastLength = past is null || fromLayer == _layers.Count ? 0 : past[fromLayer].Length;
        using var mask = LlamaModel.AttentionMask(attentionMask, hidden.shape[1], pastLength, hidden.device);
        var angles = MultimodalRope.Angles(positionIds.to(hidden.device), Config.HeadDim, Config.RopeTheta, Config.MropeSection, hidden.dtype);
        var cache = useCache ? new KeyValueCache[_layers.Count] : null;
        var x = hidden;
        for (int l = fromLayer; l < _layers.Count; l++)
        {
            (x, var layerCache) = _layers[l].Forward(x, angles, mask, past?[l], hooks, useCache);
            if (cache is not null) cache[l] = layerCache!;
        }
        return new LlamaOutput(hooks.At(HookName.FinalNorm(), _norm.Forward(x)), cache);
    }
}

internal sealed class QwenDecoderLayer : nn.Module
{
    private readonly LlamaAttention _attn;
    private readonly QwenMlp _mlp;
    private readonly RmsNorm _inputNorm, _postAttentionNorm;
    private readonly string _residPreHook, _mlpHook, _residPostHook;

    public QwenDecoderLayer(QwenConfig c, int layer, Placement at) : base($"layers.{layer}")
    {
        _attn = new LlamaAttention(c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, qkvBias: true, outBias: false, layer, at);
        _mlp = new QwenMlp(c, at);
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
        // The layer's intermediates are freed when it is done, not when the whole pass is.
        using var scope = torch.NewDisposeScope();
        x = hooks.At(_residPreHook, x);
        var (attn, cache) = _attn.Forward(_inputNorm.Forward(x), angles, mask, past, hooks, returnCache);
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

/// <summary>Qwen2MLP: down(act(gate(x)) * up(x)), no biases, act = SiLU.</summary>
internal sealed class QwenMlp : nn.Module
{
    private readonly Linear _gate, _up, _down;
    private readonly string _act;

    public QwenMlp(QwenConfig c, Placement at) : base("mlp")
    {
        _gate = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: at.Device, dtype: at.DType);
        _up = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: at.Device, dtype: at.DType);
        _down = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: false, device: at.Device, dtype: at.DType);
        _act = c.HiddenAct;
        register_module("gate_proj", _gate);
        register_module("up_proj", _up);
        register_module("down_proj", _down);
    }

    public Tensor Forward(Tensor x) => _down.forward(Activations.Apply(_act, _gate.forward(x)) * _up.forward(x));
}
