using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>
/// LLaVA's vision tower, transformers' CLIPVisionModel: a bias-free patch convolution, the class
/// token and learned positions, pre_layrnorm, then pre-LN layers. Its hidden states are the
/// pre_layrnorm output (hook point "vision.embed") and each layer's output ("vision.blocks.{l}.resid_post").
/// post_layernorm is part of the checkpoint, but LLaVA reads a hidden state and never applies it.
/// </summary>
public sealed class ClipVisionTower : nn.Module
{
    private static readonly string EmbedHook = HookName.Embed(HookName.Vision);
    private readonly ClipVisionEmbeddings _embeddings;
    private readonly LayerNorm _preLayerNorm;
    private readonly ModuleList<VisionEncoderLayer<ClipAttention>> _layers;

    public ClipVisionConfig Config { get; }
    public int NumLayers => _layers.Count;

    internal ClipVisionTower(ClipVisionConfig config, Placement at) : base("vision_tower")
    {
        Config = config;
        _embeddings = new ClipVisionEmbeddings(config, at);
        _preLayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps, device: at.Device, dtype: at.DType);
        _layers = new ModuleList<VisionEncoderLayer<ClipAttention>>();
        for (int l = 0; l < config.NumHiddenLayers; l++) _layers.Add(new VisionEncoderLayer<ClipAttention>(l, new ClipAttention(config, l, at),
            config.HiddenSize, config.IntermediateSize, config.HiddenAct, config.LayerNormEps, at.Device, at.DType));
        var postLayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps, device: at.Device, dtype: at.DType);
        register_module("vision_model", new VisionModelContainer(_embeddings, _preLayerNorm, _layers, postLayerNorm));
    }

    /// <summary>
    /// hidden_states[<paramref name="layers"/>] [B, 1+P, D]: the embeddings after pre_layrnorm, then
    /// the first <paramref name="layers"/> layers (all of them when null).
    /// </summary>
    public Tensor Forward(Tensor pixelValues, HookContext? hooks = null, int? layers = null)
    {
        int run = layers ?? _layers.Count;
        if (run < 0 || run > _layers.Count) throw new ArgumentOutOfRangeException(nameof(layers), $"the tower has {_layers.Count} layers");
        var x = hooks.At(EmbedHook, _preLayerNorm.forward(_embeddings.Forward(pixelValues)));
        for (int l = 0; l < run; l++) x = _layers[l].Forward(x, hooks);
        return x;
    }

    /// <summary>CLIPVisionTransformer: holds the parts under the checkpoint's names.</summary>
    private sealed class VisionModelContainer : nn.Module
    {
        public VisionModelContainer(ClipVisionEmbeddings embeddings, LayerNorm pre, ModuleList<VisionEncoderLayer<ClipAttention>> layers, LayerNorm post)
            : base("vision_model")
        {
            register_module("embeddings", embeddings);
            register_module("pre_layrnorm", pre);   // sic: transformers' spelling
            register_module("encoder", new EncoderContainer(layers));
            register_module("post_layernorm", post);
        }
    }

    private sealed class EncoderContainer : nn.Module
    {
        public EncoderContainer(ModuleList<VisionEncoderLayer<ClipAttention>> layers) : base("encoder") => register_module("layers", layers);
    }
}

internal sealed class ClipVisionEmbeddings : nn.Module
{
    private readonly Conv2d _patchEmbedding;
    private readonly Embedding _positionEmbedding;

    public ClipVisionEmbeddings(ClipVisionConfig c, Placement at) : base("embeddings")
    {
        var classEmbedding = new Parameter(torch.randn(c.HiddenSize, dtype: at.DType, device: at.Device) * c.InitializerRange);
        _patchEmbedding = nn.Conv2d(c.NumChannels, c.HiddenSize, kernel_size: c.PatchSize, stride: c.PatchSize, bias: false, device: at.Device, dtype: at.DType);
        _positionEmbedding = nn.Embedding(c.NumPositions, c.HiddenSize, device: at.Device, dtype: at.DType);
        register_parameter("class_embedding", classEmbedding);
        register_module("patch_embedding", _patchEmbedding);
        register_module("position_embedding", _positionEmbedding);
    }

    /// <summary>[B, 1+P, D]: class token, then the patches row by row, plus the position embedding.</summary>
    public Tensor Forward(Tensor pixelValues)
    {
        long b = pixelValues.shape[0];
        var weight = _patchEmbedding.weight!;
        var patches = _patchEmbedding.forward(pixelValues.to(weight.dtype, weight.device)).flatten(2).transpose(1, 2);
        // The registered parameter, not the field: converting the module (m.to(dtype)) replaces it.
        var cls = get_parameter("class_embedding")!.expand(b, 1, -1);
        // The position ids are 0..P: the whole table, in order.
        return torch.cat(new[] { cls, patches }, 1) + _positionEmbedding.weight!;
    }
}

internal sealed class ClipAttention : nn.Module, IVisionAttention
{
    private readonly Linear _q, _k, _v, _out;
    private readonly int _heads, _headDim;
    private readonly double _scale;
    private readonly string _patternHook;

    public ClipAttention(ClipVisionConfig c, int layer, Placement at) : base("self_attn")
    {
        _heads = c.NumAttentionHeads;
        _headDim = c.HeadDim;
        _scale = Math.Pow(_headDim, -0.5);
        _q = nn.Linear(c.HiddenSize, c.HiddenSize, device: at.Device, dtype: at.DType);
        _k = nn.Linear(c.HiddenSize, c.HiddenSize, device: at.Device, dtype: at.DType);
        _v = nn.Linear(c.HiddenSize, c.HiddenSize, device: at.Device, dtype: at.DType);
        _out = nn.Linear(c.HiddenSize, c.HiddenSize, device: at.Device, dtype: at.DType);
        _patternHook = HookName.AttnPattern(layer, HookName.Vision);
        register_module("q_proj", _q);
        register_module("k_proj", _k);
        register_module("v_proj", _v);
        register_module("out_proj", _out);
    }

    private Tensor SplitHeads(Tensor x) => x.view(x.shape[0], x.shape[1], _heads, _headDim).transpose(1, 2);

    public Tensor Forward(Tensor x, HookContext? hooks)
    {
        // CLIPAttention scales the queries before the product (not the scores), and softmaxes in the model's dtype.
        var q = SplitHeads(_q.forward(x) * _scale);
        var k = SplitHeads(_k.forward(x));
        var v = SplitHeads(_v.forward(x));
        var probs = hooks.At(_patternHook, torch.matmul(q, k.transpose(-1, -2)).softmax(-1));
        var ctx = torch.matmul(probs, v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1);
        return _out.forward(ctx);
    }
}
