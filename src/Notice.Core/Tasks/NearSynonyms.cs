namespace Notice.Core.Tasks;

/// <summary>
/// Groups of words close enough in meaning that one may never be the other's wrong answer or STR
/// replacement ("small" vs "tiny": a model that says "tiny" is not wrong). Two words are near-synonyms
/// when they share a group; a word is always its own near-synonym. Case-insensitive.
/// </summary>
public sealed class NearSynonyms
{
    private readonly Dictionary<string, List<int>> _groupsOf = new(StringComparer.OrdinalIgnoreCase);

    public NearSynonyms(IEnumerable<IEnumerable<string>> groups)
    {
        var index = 0;
        foreach (var group in groups)
        {
            foreach (var word in group.Select(w => w.Trim()).Where(w => w.Length > 0).Distinct(StringComparer.OrdinalIgnoreCase))
            {
                if (!_groupsOf.TryGetValue(word, out var list)) _groupsOf[word] = list = [];
                list.Add(index);
            }
            index++;
        }
        GroupCount = index;
    }

    /// <summary>No groups: only equal words are near-synonyms.</summary>
    public static NearSynonyms None { get; } = new([]);

    public int GroupCount { get; }

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> are equal or share a group.</summary>
    public bool AreNear(string a, string b)
    {
        if (string.Equals(a, b, StringComparison.OrdinalIgnoreCase)) return true;
        if (!_groupsOf.TryGetValue(a, out var ga) || !_groupsOf.TryGetValue(b, out var gb)) return false;
        foreach (var g in ga)
            if (gb.Contains(g)) return true;
        return false;
    }
}
