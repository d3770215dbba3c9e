namespace Notice.Vlm.Text;

/// <summary>
/// Cuts text around literal added-token strings (special tokens such as [SEP] or &lt;image&gt;) before
/// any normalisation, as transformers' added-token trie does: matching is case-sensitive, the
/// earliest occurrence wins and, among tokens starting there, the longest. Nothing around a match
/// is stripped (every token here has lstrip/rstrip false), and empty pieces are dropped.
/// </summary>
internal sealed class AddedTokenSplitter
{
    private readonly string[] _tokens;

    public AddedTokenSplitter(IEnumerable<string> tokens)
    {
        _tokens = tokens.Where(t => t.Length > 0).Distinct(StringComparer.Ordinal)
            .OrderByDescending(t => t.Length).ToArray();
    }

    /// <summary>The pieces of <paramref name="text"/> in order; IsToken marks an added token.</summary>
    public IEnumerable<(string Text, bool IsToken)> Split(string text)
    {
        int chunkStart = 0;
        for (int i = 0; i < text.Length;)
        {
            string? match = _tokens.FirstOrDefault(t => string.CompareOrdinal(text, i, t, 0, t.Length) == 0);
            if (match is null) { i++; continue; }
            if (i > chunkStart) yield return (text[chunkStart..i], false);
            yield return (match, true);
            i += match.Length;
            chunkStart = i;
        }
        if (chunkStart < text.Length) yield return (text[chunkStart..], false);
    }
}
