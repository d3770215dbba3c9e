namespace Notice.Vlm.Text;

/// <summary>Pads token-id rows to the longest one, as a processor's padding=True does.</summary>
internal static class Padding
{
    /// <summary>
    /// Ids padded with <paramref name="padId"/> on the right (BERT/BLIP) or on the left (LLaMA,
    /// padding_side "left"), and the attention mask: 1 for real tokens, 0 for padding.
    /// </summary>
    public static (long[,] Ids, long[,] AttentionMask) Pad(IReadOnlyList<int[]> rows, int padId, bool padLeft)
    {
        if (rows.Count == 0) throw new ArgumentException("no texts to encode", nameof(rows));
        int width = rows.Max(r => r.Length);
        var ids = new long[rows.Count, width];
        var mask = new long[rows.Count, width];
        for (int b = 0; b < rows.Count; b++)
        {
            int offset = padLeft ? width - rows[b].Length : 0;
            for (int t = 0; t < width; t++) ids[b, t] = padId;
            for (int t = 0; t < rows[b].Length; t++)
            {
                ids[b, offset + t] = rows[b][t];
                mask[b, offset + t] = 1;
            }
        }
        return (ids, mask);
    }
}
