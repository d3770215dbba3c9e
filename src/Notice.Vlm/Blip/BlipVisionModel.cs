using Notice.Vlm.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Blip;

/// <summary>BLIP's ViT: patch embedding + CLS + learned positions, pre-LN blocks, final LayerNorm.</summary>
public sealed class BlipVisionModel : nn.Module
{
    private static readonly string EmbedHook = HookName.Embed(HookName.Vision);
    private readonly BlipVisionEmbeddings _embeddings;
    private readonly ModuleList<VisionEncoderLayer<BlipVisionAttention>> _layers;
    private readonly LayerNorm _postLayerNorm;

    public BlipVisionConfig Config { get; }
    public int NumLayers => _layers.Count;

    public BlipVisionModel(BlipVisionConfig config) : base("vision_model")
    {
        Config = config;
        _embeddings = new BlipVisionEmbeddings(config);
        _layers = new ModuleList<VisionEncoderLayer<BlipVisionAttention>>();
        for (int l = 0; l < config.NumHiddenLayers; l++) _layers.Add(new VisionEncoderLayer<BlipVisionAttention>(l, new BlipVisionAttention(config, l),
            config.HiddenSize, config.IntermediateSize, config.HiddenAct, config.LayerNormEps));
        var encoder = new VisionEncoderContainer(_layers);
        _postLayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        register_module("embeddings", _embeddings);
        register_module("encoder", encoder);
        register_module("post_layernorm", _postLayerNorm);
    }

    /// <summary>Image embeddings [B, 1+P, D] after post_layernorm: what the text encoder cross-attends to.</summary>
    public Tensor Forward(Tensor pixelValues, HookContext? hooks = null)
    {
        var x = _embeddings.Forward(pixelValues);
        x = hooks.At(EmbedHook, x);
        foreach (var layer in _layers) x = layer.Forward(x, hooks);
        return _postLayerNorm.forward(x);
    }

    /// <summary>Holds the layer list under the checkpoint's name "encoder.layers".</summary>
    private sealed class VisionEncoderContainer : nn.Module
    {
        public VisionEncoderContainer(ModuleList<VisionEncoderLayer<BlipVisionAttention>> layers) : base("encoder")
        {
            register_module("layers", layers);
        }
    }
}

internal sealed class BlipVisionEmbeddings : nn.Module
{
    private readonly Parameter _classEmbedding;
    private readonly Conv2d _patchEmbedding;
    private readonly Parameter _positionEmbedding;

    public BlipVisionEmbeddings(BlipVisionConfig c) : base("embeddings")
    {
        _classEmbedding = new Parameter(torch.randn(1, 1, c.HiddenSize) * c.InitializerRange);
        _patchEmbedding = nn.Conv2d(3, c.HiddenSize, kernel_size: c.PatchSize, stride: c.PatchSize);
        _positionEmbedding = new Parameter(torch.randn(1, c.NumPatches + 1, c.HiddenSize) * c.InitializerRange);
        register_parameter("class_embedding", _classEmbedding);
        register_module("patch_embedding", _patchEmbedding);
        register_parameter("position_embedding", _positionEmbedding);
    }

    public Tensor Forward(Tensor pixelValues)
    {
        long b = pixelValues.shape[0];
        var patches = _patchEmbedding.forward(pixelValues.to(_patchEmbedding.weight!.dtype)).flatten(2).transpose(1, 2);
        // The registered parameters, not the fields: converting the module (m.to(dtype)) replaces them.
        var cls = get_parameter("class_embedding")!.expand(b, 1, -1).to(patches.dtype);
        var x = torch.cat(new[] { cls, patches }, 1);
        return x + get_parameter("position_embedding")!.narrow(1, 0, x.shape[1]).to(x.dtype);
    }
}

internal sealed class BlipVisionAttention : nn.Module, IVisionAttention
{
    private readonly Linear _qkv;
    private readonly Linear _projection;
    private readonly int _heads;
    private readonly int _headDim;
    private readonly double _scale;
    private readonly string _patternHook;

    public BlipVisionAttention(BlipVisionConfig c, int layer) : base("self_attn")
    {
        _heads = c.NumAttentionHeads;
        _headDim = c.HeadDim;
        _scale = Math.Pow(_headDim, -0.5);
        _qkv = nn.Linear(c.HiddenSize, 3 * c.HiddenSize);
        _projection = nn.Linear(c.HiddenSize, c.HiddenSize);
        _patternHook = HookName.AttnPattern(layer, HookName.Vision);
        register_module("qkv", _qkv);
        register_module("projection", _projection);
    }

    public Tensor Forward(Tensor x, HookContext? hooks)
    {
        long b = x.shape[0], t = x.shape[1];
        // The fused projection's output is split as (3, heads, head_dim), in that order.
        var qkv = _qkv.forward(x).reshape(b, t, 3, _heads, _headDim).permute(2, 0, 3, 1, 4);
        var q = qkv[0];
        var k = qkv[1];
        var v = qkv[2];
        var scores = torch.matmul(q, k.transpose(-1, -2)) * _scale;
        var probs = hooks.At(_patternHook, scores.softmax(-1));
        var ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(b, t, -1);
        return _projection.forward(ctx);
    }
}
