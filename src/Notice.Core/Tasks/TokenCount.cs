namespace Notice.Core.Tasks;

/// <summary>
/// Token lengths of option words. Text corruption (STR) swaps option words for others of the same
/// tokenized length so that every token position of the clean and corrupt prompts lines up.
/// The count comes from the model's tokenizer through a plain <c>Func&lt;string, int&gt;</c>
/// (word pieces of one word), so the task code works for any model.
/// </summary>
public static class TokenCount
{
    /// <summary>One token per word: the default when no tokenizer is given.</summary>
    public static readonly Func<string, int> OnePerWord = _ => 1;

    /// <summary>Token length of an option that may have several words (e.g. "soccer ball"): the sum over its words.</summary>
    public static int Of(string option, Func<string, int> tokenCount)
    {
        var total = 0;
        foreach (var word in option.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            total += tokenCount(word);
        return total;
    }
}
