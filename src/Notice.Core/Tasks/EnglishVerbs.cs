namespace Notice.Core.Tasks;

/// <summary>
/// Present participles for questions built from verb lemmas ("ride" -> "riding"), as SVO-Probes
/// stores its verbs. Regular spelling rules only; they cover the everyday verbs of the dataset.
/// </summary>
internal static class EnglishVerbs
{
    private const string Vowels = "aeiou";

    /// <summary>The -ing form of a verb or verb phrase (only its first word changes: "look at" -> "looking at").</summary>
    public static string Gerund(string verb)
    {
        var space = verb.IndexOf(' ');
        if (space > 0) return Gerund(verb[..space]) + verb[space..];
        var v = verb;
        if (v.Length > 4 && v.EndsWith("ing", StringComparison.OrdinalIgnoreCase)) return v; // already a participle
        if (v.Length < 2) return v + "ing";
        if (v.EndsWith("ie", StringComparison.OrdinalIgnoreCase)) return v[..^2] + "ying";               // lie -> lying
        if (v.EndsWith("ee", StringComparison.OrdinalIgnoreCase) || v.EndsWith("ye", StringComparison.OrdinalIgnoreCase) ||
            v.EndsWith("oe", StringComparison.OrdinalIgnoreCase) || v.Equals("be", StringComparison.OrdinalIgnoreCase))
            return v + "ing";                                                                            // see -> seeing
        if (v.EndsWith('e') && !IsVowel(v[^2])) return v[..^1] + "ing";                                  // ride -> riding
        if (DoublesFinalConsonant(v)) return v + v[^1] + "ing";                                          // sit -> sitting
        return v + "ing";
    }

    // One-syllable words ending consonant-vowel-consonant (not w, x, y) double it: run, sit, swim, hug.
    private static bool DoublesFinalConsonant(string v)
    {
        if (v.Length < 3) return false;
        char c1 = char.ToLowerInvariant(v[^3]), c2 = char.ToLowerInvariant(v[^2]), c3 = char.ToLowerInvariant(v[^1]);
        if (IsVowel(c1) || !IsVowel(c2) || IsVowel(c3) || "wxy".Contains(c3)) return false;
        var vowelGroups = 0;
        for (var i = 0; i < v.Length; i++)
            if (IsVowel(v[i]) && (i == 0 || !IsVowel(v[i - 1]))) vowelGroups++;
        return vowelGroups == 1;
    }

    private static bool IsVowel(char c) => Vowels.Contains(char.ToLowerInvariant(c));
}
