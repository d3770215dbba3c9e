using System.Text.Json;
using Notice.Vlm.Checkpoints;

namespace Notice.Vlm.Text;

/// <summary>
/// The settings a transformers tokenizer reads from a checkpoint folder: tokenizer_config.json
/// (required) and special_tokens_map.json (optional). As in transformers' from_pretrained, a
/// special token named in special_tokens_map.json overrides the one in tokenizer_config.json.
/// A token may be written as a string or as an AddedToken object {"content": ...}.
/// </summary>
internal sealed class TokenizerSettings
{
    private readonly JsonElement _config;
    private readonly JsonElement? _specialTokensMap;

    public string ConfigPath { get; }

    private TokenizerSettings(string configPath, JsonElement config, JsonElement? specialTokensMap)
    {
        ConfigPath = configPath; _config = config; _specialTokensMap = specialTokensMap;
    }

    public static TokenizerSettings Load(string folder)
    {
        var configPath = Path.Combine(folder, "tokenizer_config.json");
        var config = ReadJson(configPath) ?? throw new CheckpointException(configPath, "file not found");
        return new TokenizerSettings(configPath, config, ReadJson(Path.Combine(folder, "special_tokens_map.json")));
    }

    public bool Bool(string name, bool fallback) =>
        _config.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;

    public string String(string name, string fallback) =>
        _config.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : fallback;

    /// <summary>A true/false setting that may also be null or absent (null then).</summary>
    public bool? OptionalBool(string name) =>
        _config.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    /// <summary>A named special token such as "pad_token", or null where neither file sets it.</summary>
    public string? Token(string name)
    {
        if (_specialTokensMap is { } map && map.TryGetProperty(name, out var m) && TokenContent(m) is { } fromMap) return fromMap;
        return _config.TryGetProperty(name, out var c) ? TokenContent(c) : null;
    }

    /// <summary>A named special token that must be set.</summary>
    public string RequiredToken(string name) =>
        Token(name) ?? throw new CheckpointException(ConfigPath, $"no {name} set (nor in special_tokens_map.json)");

    /// <summary>additional_special_tokens (a list of tokens), empty where unset.</summary>
    public IReadOnlyList<string> TokenList(string name)
    {
        JsonElement list = default;
        bool found = _specialTokensMap is { } map && map.TryGetProperty(name, out list) && list.ValueKind == JsonValueKind.Array
            || _config.TryGetProperty(name, out list) && list.ValueKind == JsonValueKind.Array;
        return found ? list.EnumerateArray().Select(TokenContent).OfType<string>().ToArray() : [];
    }

    /// <summary>added_tokens_decoder: id -> token content, for every token the tokenizer added.</summary>
    public IReadOnlyDictionary<int, string> AddedTokensDecoder()
    {
        var added = new Dictionary<int, string>();
        if (!_config.TryGetProperty("added_tokens_decoder", out var decoder) || decoder.ValueKind != JsonValueKind.Object) return added;
        foreach (var entry in decoder.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, out int id) || TokenContent(entry.Value) is not { } content)
                throw new CheckpointException(ConfigPath, $"added_tokens_decoder entry '{entry.Name}' is not an id with a token");
            added[id] = content;
        }
        return added;
    }

    private static string? TokenContent(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Object when e.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
        _ => null,
    };

    internal static JsonElement? ReadJson(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(InputFiles.ReadAllBytes(path, InputFiles.MaxSideFileBytes, problem => new CheckpointException(path, problem)));
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new CheckpointException(path, $"not valid JSON: {e.Message}");
        }
    }
}
