using System.Text.RegularExpressions;

namespace Notice.Core.Tasks;

/// <summary>
/// Where a prompt names its two options: "... A or B ..." or "... A or the B ..." (an article may
/// stand before the second). Text corruption rewrites exactly these two spans, so every other
/// character of the prompt, and with it every other token, stays where it was.
/// </summary>
public readonly record struct OptionSlots(int FirstStart, string First, int SecondStart, string Second)
{
    private int FirstEnd => FirstStart + First.Length;
    private int SecondEnd => SecondStart + Second.Length;

    /// <summary>Finds the last "A or B" in <paramref name="prompt"/> whose two words are the answer and the wrong answer, in either order.</summary>
    public static bool TryFind(string prompt, string answer, string wrongAnswer, out OptionSlots slots)
    {
        slots = default;
        Match? best = null;
        foreach (var (a, b) in new[] { (answer, wrongAnswer), (wrongAnswer, answer) })
        {
            var pattern = $@"(?<![\w-])(?<a>{Regex.Escape(a)}) or (?:(?:the|a|an) )?(?<b>{Regex.Escape(b)})(?![\w-])";
            var matches = Regex.Matches(prompt, pattern, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);
            if (matches.Count > 0 && (best is null || matches[^1].Index > best.Index)) best = matches[^1];
        }
        if (best is null) return false;
        var first = best.Groups["a"];
        var second = best.Groups["b"];
        slots = new OptionSlots(first.Index, first.Value, second.Index, second.Value);
        return true;
    }

    /// <summary>
    /// The prompt with the first option replaced by <paramref name="newFirst"/> and the second by
    /// <paramref name="newSecond"/>. An "a"/"an" right before a slot follows the new word.
    /// </summary>
    public string Replace(string prompt, string newFirst, string newSecond)
    {
        var head = FixArticle(prompt[..FirstStart], newFirst);
        var middle = FixArticle(prompt[FirstEnd..SecondStart], newSecond);
        return head + newFirst + middle + newSecond + prompt[SecondEnd..];
    }

    private static string FixArticle(string before, string next)
    {
        var m = Regex.Match(before, @"(?<![\w-])(a|an|A|An) $");
        if (!m.Success) return before;
        var vowel = next.Length > 0 && "aeiouAEIOU".Contains(next[0]);
        var article = m.Groups[1].Value;
        var capital = char.IsUpper(article[0]);
        var replacement = vowel ? (capital ? "An" : "an") : (capital ? "A" : "a");
        return before[..m.Index] + replacement + " ";
    }
}
