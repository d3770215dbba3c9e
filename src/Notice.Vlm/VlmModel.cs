using static TorchSharp.torch;

namespace Notice.Vlm;

/// <summary>A greedy answer: its text, the generated ids, and the full logits its first token was
/// chosen from (BLIP: the decoder's first step; LLaVA: the prompt's last position).</summary>
public sealed record VlmAnswer(string Text, long[] Ids, float[] Logits);

/// <summary>What every model folder can do without patching: answer questions about images.
/// Which family a folder holds is decided in one place, Notice.Core's model-family registry.</summary>
public interface IVisionLanguageModel : IDisposable
{
    string Folder { get; }

    /// <summary>One question about one image, answered greedily.</summary>
    VlmAnswer Answer(string imagePath, string question);

    /// <summary>Many (image, question) pairs, answered greedily in batches; only the texts.</summary>
    IReadOnlyList<string> AnswerBatch(IReadOnlyList<(string Image, string Question)> items, int batchSize = 16);
}

/// <summary>Model-independent loading settings.</summary>
public static class VlmModel
{
    /// <summary>The --dtype names: float32, float16, bfloat16.</summary>
    public static ScalarType ParseDType(string name) => name switch
    {
        "float32" or "fp32" => ScalarType.Float32,
        "float16" or "fp16" or "half" => ScalarType.Float16,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        _ => throw new ArgumentException($"--dtype: expected float32, float16 or bfloat16, found '{name}'"),
    };

    /// <summary>The --dtype name of a dtype.</summary>
    public static string DTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        _ => "float32",
    };
}
