namespace Notice.Vlm.Text;

internal static class TokenizationSpaces
{
    /// <summary>
    /// transformers' clean_up_tokenization: removes the space that joining tokens with spaces
    /// leaves before punctuation and English contractions ("blue ?" -> "blue?").
    /// </summary>
    public static string CleanUp(string text) => text
        .Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
        .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");
}
