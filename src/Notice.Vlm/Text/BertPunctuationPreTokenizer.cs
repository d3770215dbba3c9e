using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Notice.Vlm.Text;

/// <summary>
/// BasicTokenizer's word splitting on normalised text: split on whitespace, and make every
/// punctuation character a word of its own. "Punctuation" is BasicTokenizer's _is_punctuation:
/// all ASCII non-alphanumeric printables (so "$", "+", "^" count) plus every Unicode "P*"
/// category; other symbols stay inside their word. Microsoft.ML.Tokenizers' pre-tokenizer
/// (\w+|\p{P}) differs: it drops symbols such as "$" and keeps "_" inside words.
/// </summary>
internal sealed class BertPunctuationPreTokenizer : PreTokenizer
{
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text)
    {
        int wordStart = -1;
        for (int i = 0; i < text.Length;)
        {
            var rune = Rune.GetRuneAt(text, i);
            int width = rune.Utf16SequenceLength;
            if (Rune.IsWhiteSpace(rune) || IsPunctuation(rune))
            {
                if (wordStart >= 0) yield return (wordStart, i - wordStart);
                wordStart = -1;
                if (!Rune.IsWhiteSpace(rune)) yield return (i, width);
            }
            else if (wordStart < 0)
            {
                wordStart = i;
            }
            i += width;
        }
        if (wordStart >= 0) yield return (wordStart, text.Length - wordStart);
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => PreTokenize(text.ToString());

    private static bool IsPunctuation(Rune r)
    {
        int cp = r.Value;
        if (cp is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126) return true;
        return Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }
}
