using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>
/// LlavaMultiModalProjector: linear_1, the projector activation (GELU, erf form), linear_2. Maps
/// the selected vision features into the language model's embedding space. Hook points:
/// "projector.in" (the selected features), "projector.hidden", "projector.out" (the image features
/// that replace &lt;image&gt;).
/// </summary>
public sealed class LlavaProjector : nn.Module
{
    private readonly Linear _linear1, _linear2;
    private readonly string _act;

    internal LlavaProjector(LlavaConfig c, Placement at) : base("multi_modal_projector")
    {
        _linear1 = nn.Linear(c.Vision.HiddenSize, c.Text.HiddenSize, device: at.Device, dtype: at.DType);
        _linear2 = nn.Linear(c.Text.HiddenSize, c.Text.HiddenSize, device: at.Device, dtype: at.DType);
        _act = c.ProjectorHiddenAct;
        register_module("linear_1", _linear1);
        register_module("linear_2", _linear2);
    }

    /// <summary>[B, N, Dv] vision features to [B, N, D] image features.</summary>
    public Tensor Forward(Tensor features, HookContext? hooks = null)
    {
        var x = hooks.At(HookName.ProjectorIn, features);
        x = hooks.At(HookName.ProjectorHidden, Activations.Apply(_act, _linear1.forward(x)));
        return hooks.At(HookName.ProjectorOut, _linear2.forward(x));
    }
}
