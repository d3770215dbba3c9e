using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;

namespace Notice.Vlm.Text;

/// <summary>
/// sentencepiece's DecodePieces (v0.2) for the pieces transformers' LlamaTokenizer hands it:
/// "▁" becomes a space; runs of byte pieces &lt;0xXX&gt; are joined and read as UTF-8 (each
/// malformed byte becomes U+FFFD); a string that is not a piece is copied as it is; and, with
/// add_dummy_prefix, the "▁" of the first piece is dropped while nothing has been written yet
/// (only once: the next "▁" piece is a real space).
/// Special tokens never reach it: transformers decodes them itself around the pieces.
/// </summary>
internal sealed class SentencePieceDecoder(IReadOnlyDictionary<string, int> pieces, bool byteFallback,
    bool stripDummyPrefix, bool removeExtraWhitespaces)
{
    public string Decode(IEnumerable<string> tokens)
    {
        var text = new StringBuilder();
        var bytes = new List<byte>();
        bool atStart = true, consumedStartSpace = false;
        foreach (var piece in tokens)
        {
            if (TryParseByte(piece, out byte b)) { bytes.Add(b); continue; }
            AppendUtf8(bytes, text);
            if (consumedStartSpace || text.Length > 0) atStart = false;
            consumedStartSpace = false;
            if (!pieces.ContainsKey(piece)) { text.Append(piece); continue; }
            string surface = piece;
            if (atStart && (stripDummyPrefix || removeExtraWhitespaces) && surface.StartsWith(LlamaTokenizer.SpaceSymbol))
            {
                surface = surface[1..];
                // With remove_extra_whitespaces every leading space piece goes, not just the first.
                consumedStartSpace = !removeExtraWhitespaces;
            }
            text.Append(surface.Replace(LlamaTokenizer.SpaceSymbol, ' '));
        }
        AppendUtf8(bytes, text);
        return text.ToString();
    }

    private bool TryParseByte(string piece, out byte value)
    {
        value = 0;
        return byteFallback && piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && pieces.ContainsKey(piece)
            && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    private static void AppendUtf8(List<byte> bytes, StringBuilder text)
    {
        ReadOnlySpan<byte> rest = CollectionsMarshal.AsSpan(bytes);
        while (!rest.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(rest, out var rune, out int consumed) == OperationStatus.Done)
            {
                text.Append(rune.ToString());
                rest = rest[consumed..];
            }
            else
            {
                text.Append('\uFFFD');
                rest = rest[1..];
            }
        }
        bytes.Clear();
    }
}
