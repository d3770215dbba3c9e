using Notice.Vlm.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Blip;

/// <summary>The self-attention of a ViT layer: BLIP's (fused qkv) and CLIP's (separate q, k, v) differ.</summary>
internal interface IVisionAttention
{
    Tensor Forward(Tensor x, HookContext? hooks);
}

/// <summary>
/// A pre-LN ViT layer, x + attn(ln1(x)), then h + mlp(ln2(h)), with the hook point
/// "vision.blocks.{l}.resid_post": transformers' BlipEncoderLayer and CLIPEncoderLayer are this layer
/// with their own attention and the same parameter names, so BLIP's vision encoder and LLaVA's CLIP
/// tower share it.
/// </summary>
internal sealed class VisionEncoderLayer<TAttention> : nn.Module where TAttention : nn.Module, IVisionAttention
{
    private readonly TAttention _attn;
    private readonly LayerNorm _ln1, _ln2;
    private readonly VisionMlp _mlp;
    private readonly string _residHook;

    /// <param name="device">where the parameters are created (null: the default device)</param>
    /// <param name="dtype">their dtype (null: the default dtype)</param>
    public VisionEncoderLayer(int layer, TAttention attention, int hiddenSize, int intermediateSize, string act, double layerNormEps,
        Device? device = null, ScalarType? dtype = null) : base($"layers.{layer}")
    {
        _attn = attention;
        _ln1 = nn.LayerNorm(hiddenSize, layerNormEps, device: device, dtype: dtype);
        _mlp = new VisionMlp(hiddenSize, intermediateSize, act, device, dtype);
        _ln2 = nn.LayerNorm(hiddenSize, layerNormEps, device: device, dtype: dtype);
        _residHook = HookName.ResidPost(layer, HookName.Vision);
        register_module("self_attn", _attn);
        register_module("layer_norm1", _ln1);
        register_module("mlp", _mlp);
        register_module("layer_norm2", _ln2);
    }

    public Tensor Forward(Tensor x, HookContext? hooks)
    {
        // Intermediates freed per layer: a 24-layer tower at 577 tokens would otherwise hold them all.
        using var scope = torch.NewDisposeScope();
        var h = x + _attn.Forward(_ln1.forward(x), hooks);
        h = h + _mlp.Forward(_ln2.forward(h));
        return hooks.At(_residHook, h).MoveToOuterDisposeScope();
    }
}

/// <summary>The MLP of a ViT layer, fc2(act(fc1(x))): transformers' BlipMLP and CLIPMLP.</summary>
internal sealed class VisionMlp : nn.Module
{
    private readonly Linear _fc1;
    private readonly Linear _fc2;
    private readonly string _act;

    public VisionMlp(int hiddenSize, int intermediateSize, string act, Device? device = null, ScalarType? dtype = null) : base("mlp")
    {
        _fc1 = nn.Linear(hiddenSize, intermediateSize, device: device, dtype: dtype);
        _fc2 = nn.Linear(intermediateSize, hiddenSize, device: device, dtype: dtype);
        _act = act;
        register_module("fc1", _fc1);
        register_module("fc2", _fc2);
    }

    public Tensor Forward(Tensor x) => _fc2.forward(Activations.Apply(_act, _fc1.forward(x)));
}
