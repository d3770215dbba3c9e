using Notice.Vlm.Blip;
using Notice.Vlm.Config;
using Notice.Vlm.Llava;
using static TorchSharp.torch;

namespace Notice.Vlm;

/// <summary>The model families Notice implements, as config.json's model_type names them.</summary>
public enum VlmArchitecture
{
    /// <summary>BLIP-VQA (model_type "blip"): the answer is the decoder's first step.</summary>
    Blip,
    /// <summary>LLaVA-1.5 (model_type "llava"): the answer is read at the prompt's last position.</summary>
    Llava,
}

/// <summary>A greedy answer: its text, the generated ids, and the full logits its first token was
/// chosen from (BLIP: the decoder's first step; LLaVA: the prompt's last position).</summary>
public sealed record VlmAnswer(string Text, long[] Ids, float[] Logits);

/// <summary>What every model folder can do without patching: answer questions about images.</summary>
public interface IVisionLanguageModel : IDisposable
{
    VlmArchitecture Architecture { get; }
    string Folder { get; }

    /// <summary>One question about one image, answered greedily.</summary>
    VlmAnswer Answer(string imagePath, string question);

    /// <summary>Many (image, question) pairs, answered greedily in batches; only the texts.</summary>
    IReadOnlyList<string> AnswerBatch(IReadOnlyList<(string Image, string Question)> items, int batchSize = 16);
}

/// <summary>
/// The one place a model folder's family is decided: config.json's model_type. Commands load
/// models through <see cref="Load"/> and need not know which family they hold.
/// </summary>
public static class VlmModel
{
    public static VlmArchitecture ArchitectureOf(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: model folder not found");
        var config = JsonConfig.Load(Path.Combine(folder, "config.json"));
        var type = config.String("model_type", "");
        return type switch
        {
            "blip" => VlmArchitecture.Blip,
            "llava" => VlmArchitecture.Llava,
            _ => throw config.Error("model_type", $"\"{type}\" is not a model Notice implements (expected \"blip\" or \"llava\")"),
        };
    }

    public static IVisionLanguageModel Load(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        ArchitectureOf(folder) switch
        {
            VlmArchitecture.Blip => BlipVqa.Load(folder, dtype, device),
            _ => LlavaVqa.Load(folder, dtype, device),
        };

    /// <summary>The family's name as people write it.</summary>
    public static string DisplayName(VlmArchitecture architecture) => architecture == VlmArchitecture.Llava ? "LLaVA" : "BLIP";

    /// <summary>The --dtype names: float32, float16, bfloat16.</summary>
    public static ScalarType ParseDType(string name) => name switch
    {
        "float32" or "fp32" => ScalarType.Float32,
        "float16" or "fp16" or "half" => ScalarType.Float16,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        _ => throw new ArgumentException($"--dtype: expected float32, float16 or bfloat16, found '{name}'"),
    };
}
