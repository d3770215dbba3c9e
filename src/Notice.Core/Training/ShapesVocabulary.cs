using System.Text.RegularExpressions;
using Notice.Core.Tasks;

namespace Notice.Core.Training;

/// <summary>
/// Every word the shapes tasks can put in a prompt, a corrupt (STR) prompt or an answer, each one
/// WordPiece token, so a model trained on them has a vocabulary of exactly these words and no
/// piece splits: STR options then always have one token each, like the options they replace.
/// </summary>
public static partial class ShapesVocabulary
{
    /// <summary>The words, in a fixed order: each task's template words, then its options and STR words.</summary>
    public static IReadOnlyList<string> Words { get; } = Build();

    private static List<string> Build()
    {
        var words = new List<string>();
        foreach (var task in ShapesTaskGenerator.Tasks)
        {
            // The template without its option slots, as BertTokenizer's basic tokenizer splits it.
            var template = Slot().Replace(ShapesTaskGenerator.PromptTemplate(task), " ").ToLowerInvariant();
            words.AddRange(WordOrPunctuation().Matches(template).Select(m => m.Value));
            words.AddRange(ShapesTaskGenerator.Options(task));
            words.AddRange(ShapesTaskGenerator.StrWords(task));
        }
        return words.Distinct(StringComparer.Ordinal).ToList();
    }

    [GeneratedRegex(@"\{\d+\}")]
    private static partial Regex Slot();

    [GeneratedRegex(@"[\p{L}\p{N}]+|[^\p{L}\p{N}\s]")]
    private static partial Regex WordOrPunctuation();
}
