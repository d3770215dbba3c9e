using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Blip;

/// <summary>
/// The MLP of a ViT layer, fc2(act(fc1(x))): transformers' BlipMLP and CLIPMLP are the same module
/// with the same parameter names, so BLIP's vision encoder and LLaVA's CLIP tower share this one.
/// </summary>
internal sealed class VisionMlp : nn.Module
{
    private readonly Linear _fc1;
    private readonly Linear _fc2;
    private readonly string _act;

    /// <param name="device">where the parameters are created (null: the default device)</param>
    /// <param name="dtype">their dtype (null: the default dtype)</param>
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
