using System.Text.Json;
using System.Text.Json.Nodes;

namespace Notice.Vlm.Config;

/// <summary>
/// Reads fields of a Hugging Face config.json object with transformers' defaults for omitted
/// fields ("diff style" configs leave out every value equal to the class default). A field of
/// the wrong type is an error naming the file and the field.
/// </summary>
public sealed class JsonConfig(string file, string path, JsonObject obj)
{
    public string File { get; } = file;
    public JsonObject Object { get; } = obj;

    /// <summary>The largest config file read: 16 MiB (real ones are a few KiB).</summary>
    public const long MaxFileBytes = 16L << 20;

    /// <summary>Reads a config file: a regular file (or a link to one, as in a Hugging Face cache) of at
    /// most <see cref="MaxFileBytes"/> holding a JSON object.</summary>
    public static JsonConfig Load(string file)
    {
        var bytes = Checkpoints.InputFiles.ReadAllBytes(file, MaxFileBytes, problem => new ConfigException(file, "", problem));
        JsonNode? node;
        ReadOnlySpan<byte> utf8 = bytes;
        if (utf8.StartsWith("\uFEFF"u8)) utf8 = utf8[3..];   // a byte-order mark, as File.ReadAllText skips it
        try { node = JsonNode.Parse(utf8); }
        catch (Exception e) when (e is JsonException or ArgumentException) { throw new ConfigException(file, "", $"invalid JSON: {e.Message.ReplaceLineEndings(" ")}"); }
        if (node is not JsonObject o) throw new ConfigException(file, "", "expected a JSON object");
        return new JsonConfig(file, "", o);
    }

    private string FieldPath(string name) => path.Length == 0 ? name : $"{path}.{name}";

    public bool Has(string name) => Object.TryGetPropertyValue(name, out var v) && v is not null;

    public JsonConfig Section(string name)
    {
        if (!Object.TryGetPropertyValue(name, out var v) || v is null) return new JsonConfig(File, FieldPath(name), new JsonObject());
        if (v is not JsonObject o) throw new ConfigException(File, FieldPath(name), "expected an object");
        return new JsonConfig(File, FieldPath(name), o);
    }

    public int Int(string name, int dflt)
    {
        if (!Object.TryGetPropertyValue(name, out var v) || v is null) return dflt;
        try { return v.GetValue<int>(); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            if (v is JsonValue jv && jv.TryGetValue<double>(out var d) && d == Math.Floor(d))
            {
                // 1e30 or 10000000000 is an integer, but not one that fits: never wrap it round.
                if (d < int.MinValue || d > int.MaxValue)
                    throw new ConfigException(File, FieldPath(name), $"{v.ToJsonString()} is out of range (at most {int.MaxValue})");
                return (int)d;
            }
            throw new ConfigException(File, FieldPath(name), $"expected an integer, found {v.ToJsonString()}");
        }
    }

    /// <summary>
    /// A size field (a width, a count): an integer in [<paramref name="min"/>, <paramref name="max"/>].
    /// The caps (<see cref="ConfigLimits"/>) are far above any real model, so a value beyond them is a
    /// corrupt or hostile config, refused before anything is allocated from it.
    /// </summary>
    public int Size(string name, int dflt, int min, int max)
    {
        int value = Int(name, dflt);
        if (value < min || value > max)
            throw new ConfigException(File, FieldPath(name),
                min == max ? $"must be {min}, found {value}"
                : value < min && min == 1 ? $"must be a positive integer, found {value}"
                : $"must be between {min} and {max}, found {value}");
        return value;
    }

    public int? IntOrNull(string name, int? dflt)
    {
        if (!Object.TryGetPropertyValue(name, out var v) || v is null) return dflt;
        return Int(name, 0);
    }

    public double Double(string name, double dflt)
    {
        if (!Object.TryGetPropertyValue(name, out var v) || v is null) return dflt;
        try { return v.GetValue<double>(); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new ConfigException(File, FieldPath(name), $"expected a number, found {v.ToJsonString()}");
        }
    }

    public bool Bool(string name, bool dflt)
    {
        if (!Object.TryGetPropertyValue(name, out var v) || v is null) return dflt;
        try { return v.GetValue<bool>(); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new ConfigException(File, FieldPath(name), $"expected true or false, found {v.ToJsonString()}");
        }
    }

    public string String(string name, string dflt)
    {
        if (!Object.TryGetPropertyValue(name, out var v) || v is null) return dflt;
        try { return v.GetValue<string>(); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new ConfigException(File, FieldPath(name), $"expected a string, found {v.ToJsonString()}");
        }
    }

    public ConfigException Error(string name, string problem) => new(File, FieldPath(name), problem);
}

/// <summary>
/// Upper bounds on config.json size fields, generous for real models (LLaMA-3-405B: hidden 16384,
/// 126 layers, 128 heads, MLP 53248, vocabulary 128256; CLIP/SigLIP towers: images up to 896, patches
/// 14 to 16). A field above its cap is refused with an error naming it, so a corrupt or hostile config
/// can neither overflow the arithmetic done on it nor make the loader try to allocate terabytes.
/// Every size field must also be at least 1 (patch_size 0 or num_attention_heads 0 would divide by zero).
/// </summary>
public static class ConfigLimits
{
    /// <summary>hidden_size (and encoder_hidden_size): at most 32,768.</summary>
    public const int HiddenSize = 32_768;
    /// <summary>intermediate_size (the MLP width): at most 262,144.</summary>
    public const int IntermediateSize = 262_144;
    /// <summary>num_hidden_layers: at most 512.</summary>
    public const int Layers = 512;
    /// <summary>num_attention_heads and num_key_value_heads: at most 1,024.</summary>
    public const int Heads = 1_024;
    /// <summary>vocab_size: at most 1,048,576 (2^20).</summary>
    public const int VocabSize = 1_048_576;
    /// <summary>max_position_embeddings: at most 1,048,576 (2^20).</summary>
    public const int Positions = 1_048_576;
    /// <summary>image_size (pixels per side): at most 8,192.</summary>
    public const int ImageSize = 8_192;
    /// <summary>patch_size (pixels per side): 1 to 1,024, and no more than image_size.</summary>
    public const int PatchSize = 1_024;
    /// <summary>Patches per image, (image_size / patch_size)^2: at most 262,144 (a 512 x 512 grid).</summary>
    public const int Patches = 262_144;
    /// <summary>num_channels of a vision tower: the image processors make RGB, so exactly 3.</summary>
    public const int Channels = 3;
}

/// <summary>A config file that cannot be used; names the file and the field.</summary>
public sealed class ConfigException(string file, string field, string problem)
    : Exception(field.Length == 0 ? $"{file}: {problem}" : $"{file}: field '{field}': {problem}")
{
    public string File { get; } = file;
    public string Field { get; } = field;
}
