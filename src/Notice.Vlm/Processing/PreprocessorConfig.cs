using System.Text.Json;
using Notice.Vlm.Checkpoints;

namespace Notice.Vlm.Processing;

/// <summary>
/// Typed reads of a checkpoint's preprocessor_config.json. A missing field gives the caller's
/// default (transformers' class default); a field of the wrong type is an error that names the
/// file and the field, never a silent default.
/// </summary>
internal sealed class PreprocessorConfig
{
    private readonly JsonElement _root;

    /// <summary>The file name used in error messages.</summary>
    public string File { get; }

    private PreprocessorConfig(string file, JsonElement root) { File = file; _root = root; }

    public static PreprocessorConfig Load(string path)
    {
        // A regular file (or a link to one) of sane length; the reader skips a byte-order mark as ReadAllText does.
        var bytes = InputFiles.ReadAllBytes(path, InputFiles.MaxSideFileBytes, problem => new CheckpointException(path, problem));
        string json = new StreamReader(new MemoryStream(bytes), System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true).ReadToEnd();
        return Parse(json, path);
    }

    public static PreprocessorConfig Parse(string json, string nameForErrors)
    {
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(json);
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new CheckpointException(nameForErrors, $"not valid JSON: {e.Message}");
        }
        if (root.ValueKind != JsonValueKind.Object)
            throw new CheckpointException(nameForErrors, $"expected a JSON object at the top level, found {root.ValueKind}");
        return new PreprocessorConfig(nameForErrors, root);
    }

    public CheckpointException Error(string field, string problem) => new(File, $"field '{field}': {problem}");

    /// <summary>The field's value, or null when it is absent or JSON null.</summary>
    private JsonElement? Field(string name) =>
        _root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? GetString(string name)
    {
        if (Field(name) is not { } v) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Error(name, $"expected a string, found {Describe(v)}");
    }

    public bool GetBool(string name, bool fallback)
    {
        if (Field(name) is not { } v) return fallback;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(name, $"expected true or false, found {Describe(v)}"),
        };
    }

    public double GetDouble(string name, double fallback)
    {
        if (Field(name) is not { } v) return fallback;
        return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Error(name, $"expected a number, found {Describe(v)}");
    }

    public int? GetInt(string name) => Field(name) is { } v ? ToInt(v, name) : null;

    /// <summary>
    /// image_mean / image_std: three numbers, one per RGB channel, or (as transformers also
    /// accepts) one number for all channels.
    /// </summary>
    public double[] GetChannelValues(string name, double[] fallback)
    {
        if (Field(name) is not { } v) return fallback;
        if (v.ValueKind == JsonValueKind.Number) return [v.GetDouble(), v.GetDouble(), v.GetDouble()];
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != 3 || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number))
            throw Error(name, $"expected a list of 3 numbers (one per RGB channel), found {Describe(v)}");
        return v.EnumerateArray().Select(e => e.GetDouble()).ToArray();
    }

    /// <summary>
    /// A size field: an object such as {"height": 384, "width": 384} or {"shortest_edge": 224},
    /// or a bare integer (older configs). Returns the named integer entries.
    /// </summary>
    public IReadOnlyDictionary<string, int>? GetSize(string name)
    {
        if (Field(name) is not { } v) return null;
        if (v.ValueKind == JsonValueKind.Number) return new Dictionary<string, int> { [""] = ToInt(v, name) };
        if (v.ValueKind != JsonValueKind.Object) throw Error(name, $"expected an object such as {{\"height\": 384, \"width\": 384}}, found {Describe(v)}");
        var size = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in v.EnumerateObject())
        {
            if (p.Value.ValueKind == JsonValueKind.Null) continue; // transformers writes e.g. "longest_edge": null
            size[p.Name] = ToInt(p.Value, $"{name}.{p.Name}");
        }
        return size;
    }

    private int ToInt(JsonElement v, string field)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i))
            throw Error(field, $"expected an integer, found {Describe(v)}");
        return i;
    }

    private static string Describe(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"the string \"{v.GetString()}\"",
        JsonValueKind.Array => $"a list of {v.GetArrayLength()}",
        JsonValueKind.Object => "an object",
        JsonValueKind.True or JsonValueKind.False => v.GetRawText(),
        _ => $"{v.GetRawText()}",
    };

    /// <summary>resample: PIL's filter code; only the filters <see cref="PilResize"/> reproduces exactly are accepted.</summary>
    public PilFilter GetResample(string name, PilFilter fallback)
    {
        if (Field(name) is not { } v) return fallback;
        int code = ToInt(v, name);
        return code switch
        {
            (int)PilFilter.Bicubic => PilFilter.Bicubic,
            (int)PilFilter.Bilinear => PilFilter.Bilinear,
            _ => throw Error(name, $"resampling filter {code} ({PilName(code)}) is not supported; use 3 (bicubic) or 2 (bilinear)"),
        };
    }

    private static string PilName(int code) => code switch
    {
        0 => "nearest", 1 => "lanczos", 4 => "box", 5 => "hamming", _ => "unknown",
    };
}
