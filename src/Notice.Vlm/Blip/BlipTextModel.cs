using Notice.Vlm.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Blip;

/// <summary>Keys and values of one cross-attention layer, [B, H, S, Dh]: computed once per image
/// (or question) and reused by every pass that attends to it.</summary>
public sealed record CrossKeyValues(Tensor Keys, Tensor Values) : IDisposable
{
    /// <summary>Rows repeated to a batch of <paramref name="batch"/> (a view, no copy, when there is one source row).</summary>
    public CrossKeyValues Expand(long batch) =>
        Keys.shape[0] == batch ? this : new CrossKeyValues(Keys.expand(batch, -1, -1, -1), Values.expand(batch, -1, -1, -1));

    public void Dispose() { Keys.Dispose(); Values.Dispose(); }
}

/// <summary>
/// BLIP's BERT (BlipTextModel without pooler): word + absolute position embeddings and LayerNorm,
/// then layers of self-attention, cross-attention and MLP, each post-LN. Used twice in
/// BlipForQuestionAnswering: as the question encoder (<see cref="HookName.Text"/> hooks) over the
/// image embeddings, and as the answer decoder (<see cref="HookName.Decoder"/> hooks, causal) over the
/// question embeddings.
/// </summary>
public sealed class BlipTextModel : nn.Module
{
    private readonly BlipTextEmbeddings _embeddings;
    private readonly ModuleList<BlipTextLayer> _layers;
    private readonly string _embedHook;

    public BlipTextConfig Config { get; }
    /// <summary>The stack its hook points belong to (<see cref="HookName.Text"/> or <see cref="HookName.Decoder"/>).</summary>
    public string HookPrefix { get; }
    public int NumLayers => _layers.Count;
    public IReadOnlyList<BlipTextLayer> Layers => _layers.ToList();

    public BlipTextModel(BlipTextConfig config, string name, string hookPrefix) : base(name)
    {
        Config = config;
        HookPrefix = hookPrefix;
        _embedHook = HookName.Embed(hookPrefix);
        _embeddings = new BlipTextEmbeddings(config);
        _layers = new ModuleList<BlipTextLayer>();
        for (int l = 0; l < config.NumHiddenLayers; l++) _layers.Add(new BlipTextLayer(config, l, hookPrefix));
        register_module("embeddings", _embeddings);
        register_module("encoder", new LayerContainer(_layers));
    }

    /// <summary>Embeddings output [B, T, D] (hook point <see cref="HookName.Embed"/> of the stack).</summary>
    public Tensor Embed(Tensor inputIds, HookContext? hooks = null, long pastLength = 0) =>
        hooks.At(_embedHook, _embeddings.Forward(inputIds, pastLength));

    /// <summary>Cross-attention keys and values of every layer for these encoder states.</summary>
    public CrossKeyValues[] CrossKeysValues(Tensor encoderStates) =>
        _layers.Select(l => l.CrossAttention.KeysValues(encoderStates)).ToArray();

    /// <summary>
    /// Runs layers [fromLayer, NumLayers) on <paramref name="hidden"/> (the residual stream entering
    /// fromLayer). <paramref name="selfMask"/> is additive [B or 1, 1, T or 1, T] (null: attend to
    /// all). <paramref name="cross"/> holds each layer's cross-attention keys/values (batch 1 or B).
    /// </summary>
    public Tensor Forward(Tensor hidden, Tensor? selfMask, IReadOnlyList<CrossKeyValues> cross, HookContext? hooks = null, int fromLayer = 0)
    {
        var x = hidden;
        for (int l = fromLayer; l < _layers.Count; l++)
            x = _layers[l].Forward(x, selfMask, cross[l].Expand(x.shape[0]), hooks);
        return x;
    }

    /// <summary>HF's extended attention mask: (1 - mask) * -10000, broadcast over heads and queries.</summary>
    public static Tensor PaddingMask(Tensor attentionMask, ScalarType dtype) =>
        (1.0 - attentionMask.to(dtype)).unsqueeze(1).unsqueeze(1) * -10000.0;

    /// <summary>Causal mask for the decoder, [1, 1, T, T], in the same additive form.</summary>
    public static Tensor CausalMask(long length, ScalarType dtype, Device device)
    {
        var causal = torch.ones(length, length, dtype: dtype, device: device).tril();
        return ((1.0 - causal) * -10000.0).unsqueeze(0).unsqueeze(0);
    }

    private sealed class LayerContainer : nn.Module
    {
        public LayerContainer(ModuleList<BlipTextLayer> layers) : base("encoder") => register_module("layer", layers);
    }
}

internal sealed class BlipTextEmbeddings : nn.Module
{
    private readonly Embedding _words;
    private readonly Embedding _positions;
    private readonly LayerNorm _norm;

    public BlipTextEmbeddings(BlipTextConfig c) : base("embeddings")
    {
        _words = nn.Embedding(c.VocabSize, c.HiddenSize, padding_idx: c.PadTokenId);
        _positions = nn.Embedding(c.MaxPositionEmbeddings, c.HiddenSize);
        _norm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        register_module("word_embeddings", _words);
        register_module("position_embeddings", _positions);
        register_module("LayerNorm", _norm);
    }

    public Tensor Forward(Tensor inputIds, long pastLength)
    {
        long t = inputIds.shape[1];
        using var positions = torch.arange(pastLength, pastLength + t, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0);
        return _norm.forward(_words.forward(inputIds) + _positions.forward(positions));
    }
}

/// <summary>BlipTextSelfAttention: softmax(QK^T/sqrt(d) + mask) V per head. For cross-attention the
/// keys and values come from the encoder states (precomputed, see <see cref="KeysValues"/>).</summary>
public sealed class BlipTextAttention : nn.Module
{
    private readonly Linear _query;
    private readonly Linear _key;
    private readonly Linear _value;
    private readonly int _heads;
    private readonly int _headDim;
    private readonly string _zHook;
    private readonly string _patternHook;

    internal BlipTextAttention(BlipTextConfig c, bool isCross, int layer, string stack) : base("self")
    {
        _heads = c.NumAttentionHeads;
        _headDim = c.HeadDim;
        int kvIn = isCross ? c.EncoderHiddenSize : c.HiddenSize;
        _query = nn.Linear(c.HiddenSize, c.HiddenSize);
        _key = nn.Linear(kvIn, c.HiddenSize);
        _value = nn.Linear(kvIn, c.HiddenSize);
        _zHook = HookName.Block(layer, isCross ? BlockHook.CrossZ : BlockHook.AttnZ, stack);
        _patternHook = HookName.Block(layer, isCross ? BlockHook.CrossPattern : BlockHook.AttnPattern, stack);
        register_module("query", _query);
        register_module("key", _key);
        register_module("value", _value);
    }

    private Tensor SplitHeads(Tensor x) => x.view(x.shape[0], x.shape[1], _heads, _headDim).permute(0, 2, 1, 3);

    /// <summary>Keys and values [B, H, S, Dh] of <paramref name="states"/>.</summary>
    public CrossKeyValues KeysValues(Tensor states) => new(SplitHeads(_key.forward(states)), SplitHeads(_value.forward(states)));

    /// <summary>Context [B, T, H*Dh] before the output projection; hook "z" sees it as [B, T, H, Dh].</summary>
    public Tensor Forward(Tensor hidden, CrossKeyValues kv, Tensor? mask, HookContext? hooks)
    {
        var q = SplitHeads(_query.forward(hidden));
        var scores = torch.matmul(q, kv.Keys.transpose(-1, -2)) / Math.Sqrt(_headDim);
        if (mask is not null) scores = scores + mask;
        var probs = hooks.At(_patternHook, scores.softmax(-1));
        var z = torch.matmul(probs, kv.Values).permute(0, 2, 1, 3);   // [B, T, H, Dh]
        z = hooks.At(_zHook, z.contiguous());
        return z.reshape(z.shape[0], z.shape[1], -1);
    }
}

/// <summary>BlipTextAttention (the HF wrapper): attention ("self"), then output: LayerNorm(dense(ctx) + input).</summary>
public sealed class BlipTextAttentionBlock : nn.Module
{
    private readonly BlipTextAttention _self;
    private readonly Linear _dense;
    private readonly LayerNorm _norm;
    private readonly string _outHook;

    public BlipTextAttention Attention => _self;

    internal BlipTextAttentionBlock(BlipTextConfig c, bool isCross, string name, int layer, string stack) : base(name)
    {
        _self = new BlipTextAttention(c, isCross, layer, stack);
        _dense = nn.Linear(c.HiddenSize, c.HiddenSize);
        _norm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        _outHook = HookName.Block(layer, isCross ? BlockHook.CrossOut : BlockHook.AttnOut, stack);
        register_module("self", _self);
        register_module("output", new OutputContainer(_dense, _norm));
    }

    public CrossKeyValues KeysValues(Tensor states) => _self.KeysValues(states);

    public Tensor Forward(Tensor hidden, CrossKeyValues kv, Tensor? mask, HookContext? hooks)
    {
        var ctx = _self.Forward(hidden, kv, mask, hooks);
        return hooks.At(_outHook, _norm.forward(_dense.forward(ctx) + hidden));
    }

    internal sealed class OutputContainer : nn.Module
    {
        public OutputContainer(Linear dense, LayerNorm norm) : base("output")
        {
            register_module("dense", dense);
            register_module("LayerNorm", norm);
        }
    }
}

/// <summary>One BERT layer with cross-attention: self-attention, cross-attention, MLP; post-LN.</summary>
public sealed class BlipTextLayer : nn.Module
{
    private readonly BlipTextAttentionBlock _attention;
    private readonly BlipTextAttentionBlock _cross;
    private readonly Linear _intermediate;
    private readonly Linear _output;
    private readonly LayerNorm _outputNorm;
    private readonly string _act;
    private readonly string _residPreHook, _mlpHook, _residPostHook;

    public BlipTextAttentionBlock SelfAttention => _attention;
    public BlipTextAttentionBlock CrossAttention => _cross;

    internal BlipTextLayer(BlipTextConfig c, int layer, string hookPrefix) : base($"layer.{layer}")
    {
        _attention = new BlipTextAttentionBlock(c, isCross: false, "attention", layer, hookPrefix);
        _cross = new BlipTextAttentionBlock(c, isCross: true, "crossattention", layer, hookPrefix);
        _intermediate = nn.Linear(c.HiddenSize, c.IntermediateSize);
        _output = nn.Linear(c.IntermediateSize, c.HiddenSize);
        _outputNorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        _act = c.HiddenAct;
        _residPreHook = HookName.ResidPre(layer, hookPrefix);
        _mlpHook = HookName.MlpOut(layer, hookPrefix);
        _residPostHook = HookName.ResidPost(layer, hookPrefix);
        register_module("attention", _attention);
        register_module("crossattention", _cross);
        register_module("intermediate", new DenseContainer("intermediate", _intermediate));
        register_module("output", new BlipTextAttentionBlock.OutputContainer(_output, _outputNorm));
    }

    public Tensor Forward(Tensor x, Tensor? selfMask, CrossKeyValues cross, HookContext? hooks)
    {
        x = hooks.At(_residPreHook, x);
        using var selfKv = _attention.KeysValues(x);
        var a = _attention.Forward(x, selfKv, selfMask, hooks);
        var c = _cross.Forward(a, cross, null, hooks);   // the image (or question) mask is all ones: adds nothing
        var mlp = hooks.At(_mlpHook, _output.forward(Activations.Apply(_act, _intermediate.forward(c))));
        return hooks.At(_residPostHook, _outputNorm.forward(mlp + c));
    }

    private sealed class DenseContainer : nn.Module
    {
        public DenseContainer(string name, Linear dense) : base(name) => register_module("dense", dense);
    }
}
