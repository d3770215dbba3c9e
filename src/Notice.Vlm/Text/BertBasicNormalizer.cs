using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Notice.Vlm.Text;

/// <summary>
/// The text clean-up of transformers' BasicTokenizer, in its order: drop NUL, U+FFFD and control
/// characters; turn whitespace (tab and newline included) into spaces; put spaces around CJK
/// ideographs; NFC; lower-case; strip accents (NFD, then drop non-spacing marks).
/// Microsoft.ML.Tokenizers' own BertNormalizer is not used because it deletes tabs and newlines
/// instead of treating them as spaces ("red\tblue" would become one word).
/// </summary>
internal sealed class BertBasicNormalizer(bool lowerCase, bool stripAccents, bool spaceCjk) : Normalizer
{
    public override string Normalize(string original) => Normalize(original.AsSpan());

    public override string Normalize(ReadOnlySpan<char> original)
    {
        var sb = new StringBuilder(original.Length);
        foreach (var rune in original.EnumerateRunes())
        {
            if (rune.Value == 0 || rune.Value == 0xFFFD || IsControl(rune)) continue;
            if (IsWhitespace(rune)) sb.Append(' ');
            else if (spaceCjk && IsCjk(rune.Value)) sb.Append(' ').Append(rune.ToString()).Append(' ');
            else sb.Append(rune.ToString());
        }
        string text = sb.ToString().Normalize(NormalizationForm.FormC);
        if (lowerCase) text = text.ToLowerInvariant();
        if (stripAccents) text = StripAccents(text);
        return text;
    }

    private static string StripAccents(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char c in text.Normalize(NormalizationForm.FormD))
            if (CharUnicodeInfo.GetUnicodeCategory(c) != UnicodeCategory.NonSpacingMark) sb.Append(c);
        return sb.ToString();
    }

    private static bool IsWhitespace(Rune r) =>
        r.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(r) == UnicodeCategory.SpaceSeparator;

    // BasicTokenizer's _is_control: any "C*" category except tab, newline and carriage return.
    private static bool IsControl(Rune r) =>
        r.Value is not ('\t' or '\n' or '\r') && Rune.GetUnicodeCategory(r) is UnicodeCategory.Control
            or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;

    // The CJK Unified Ideograph blocks BasicTokenizer._is_chinese_char lists.
    private static bool IsCjk(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF
            or >= 0x2A700 and <= 0x2B73F or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF
            or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
