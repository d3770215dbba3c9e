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

    public static JsonConfig Load(string file)
    {
        if (!System.IO.File.Exists(file)) throw new ConfigException(file, "", "file not found");
        JsonNode? node;
        try { node = JsonNode.Parse(System.IO.File.ReadAllText(file)); }
        catch (JsonException e) { throw new ConfigException(file, "", $"invalid JSON: {e.Message}"); }
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
            if (v is JsonValue jv && jv.TryGetValue<double>(out var d) && d == Math.Floor(d)) return (int)d;
            throw new ConfigException(File, FieldPath(name), $"expected an integer, found {v.ToJsonString()}");
        }
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

/// <summary>A config file that cannot be used; names the file and the field.</summary>
public sealed class ConfigException(string file, string field, string problem)
    : Exception(field.Length == 0 ? $"{file}: {problem}" : $"{file}: field '{field}': {problem}")
{
    public string File { get; } = file;
    public string Field { get; } = field;
}
