using System.Text.Json;

namespace Notice.Core.Tasks;

/// <summary>
/// Which MIT-States adjectives are asked about, in which category (color, shape, texture), and which
/// are near-synonyms. Kept as data (Data/mit_states_groups.json, embedded) so a researcher can change
/// the groups without touching code: pass their own file to <see cref="Load"/>.
/// </summary>
public sealed class MitStatesGroups
{
    private const string ResourceName = "Notice.Core.Tasks.Data.mit_states_groups.json";
    private static readonly Lazy<MitStatesGroups> DefaultGroups = new(LoadDefault);

    private MitStatesGroups(IReadOnlyDictionary<string, string> categoryOf, NearSynonyms synonyms)
    {
        CategoryOf = categoryOf;
        Synonyms = synonyms;
    }

    /// <summary>The groups shipped with Notice.</summary>
    public static MitStatesGroups Default => DefaultGroups.Value;

    /// <summary>Category of each adjective (case-insensitive); adjectives not here are not asked about.</summary>
    public IReadOnlyDictionary<string, string> CategoryOf { get; }

    public NearSynonyms Synonyms { get; }

    /// <summary>Reads a groups file of the same form as the shipped one.</summary>
    public static MitStatesGroups Load(string path)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new TaskInputException(full, "groups file not found");
        return Parse(File.ReadAllText(full), full);
    }

    /// <summary>
    /// Parses <c>{"categories": {"color": [...], ...}, "near_synonyms": [[...], ...]}</c>;
    /// <paramref name="source"/> names the text in errors.
    /// </summary>
    public static MitStatesGroups Parse(string json, string source)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            var root = document.RootElement;
            if (!root.TryGetProperty("categories", out var categories) || categories.ValueKind != JsonValueKind.Object)
                throw new TaskInputException(source, "missing object", field: "categories");
            var categoryOf = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var category in categories.EnumerateObject())
            {
                foreach (var word in Words(category.Value, source, $"categories.{category.Name}"))
                {
                    if (categoryOf.TryGetValue(word, out var other) && other != category.Name)
                        throw new TaskInputException(source, $"'{word}' is in both {other} and {category.Name}", field: "categories");
                    categoryOf[word] = category.Name;
                }
            }
            var groups = new List<List<string>>();
            if (root.TryGetProperty("near_synonyms", out var synonyms))
            {
                if (synonyms.ValueKind != JsonValueKind.Array)
                    throw new TaskInputException(source, "must be an array of arrays of words", field: "near_synonyms");
                foreach (var group in synonyms.EnumerateArray()) groups.Add(Words(group, source, "near_synonyms"));
            }
            return new MitStatesGroups(categoryOf, new NearSynonyms(groups));
        }
        catch (JsonException e)
        {
            throw new TaskInputException(source, $"malformed JSON: {e.Message}", inner: e);
        }
    }

    private static List<string> Words(JsonElement array, string source, string field)
    {
        if (array.ValueKind != JsonValueKind.Array || array.EnumerateArray().Any(w => w.ValueKind != JsonValueKind.String))
            throw new TaskInputException(source, "must be an array of words", field: field);
        return [.. array.EnumerateArray().Select(w => w.GetString()!.Trim()).Where(w => w.Length > 0)];
    }

    private static MitStatesGroups LoadDefault()
    {
        using var stream = typeof(MitStatesGroups).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"embedded resource {ResourceName} is missing from Notice.Core");
        using var reader = new StreamReader(stream);
        return Parse(reader.ReadToEnd(), ResourceName);
    }
}
