using static TorchSharp.torch;

namespace Notice.Vlm.Blip;

/// <summary>The activation functions Hugging Face configs name in hidden_act.</summary>
internal static class Activations
{
    public static Tensor Apply(string name, Tensor x) => name switch
    {
        "gelu" => nn.functional.gelu(x),                              // erf form
        "gelu_new" or "gelu_pytorch_tanh" => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh, false),
        "quick_gelu" => x * TorchSharp.torch.sigmoid(1.702 * x),
        "relu" => nn.functional.relu(x),
        "silu" => nn.functional.silu(x),
        _ => throw new NotSupportedException($"activation '{name}'"),
    };

    public static bool Supports(string name) => name is "gelu" or "gelu_new" or "gelu_pytorch_tanh" or "quick_gelu" or "relu" or "silu";
}
