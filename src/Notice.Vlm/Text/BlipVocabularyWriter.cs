using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Notice.Vlm.Text;

/// <summary>
/// Writes the tokenizer files of a new BLIP vocabulary (vocab.txt, tokenizer_config.json,
/// special_tokens_map.json), laid out as BLIP's own: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, the
/// words, then [DEC] (bos_token, the decoder's start) and [ENC] (the one additional special token)
/// as the last two ids. <see cref="BlipTokenizer.Load"/> and transformers' BlipProcessor read them.
/// </summary>
public static class BlipVocabularyWriter
{
    /// <summary>The special tokens that come before the words, in id order.</summary>
    public static IReadOnlyList<string> LeadingSpecialTokens { get; } = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

    public const string DecToken = "[DEC]";
    public const string EncToken = "[ENC]";

    /// <summary>Every token in id order: the leading specials, <paramref name="words"/>, [DEC], [ENC].</summary>
    /// <exception cref="ArgumentException">A word that BertTokenizer would never produce whole
    /// (upper case, whitespace), a special token, or a duplicate.</exception>
    public static IReadOnlyList<string> Tokens(IEnumerable<string> words)
    {
        var tokens = new List<string>(LeadingSpecialTokens);
        var seen = new HashSet<string>(tokens, StringComparer.Ordinal) { DecToken, EncToken };
        foreach (var word in words)
        {
            // do_lower_case: upper-case entries would be unreachable.
            if (word.Length == 0 || word.Any(char.IsWhiteSpace) || word != word.ToLowerInvariant())
                throw new ArgumentException($"'{word}' cannot be a vocabulary entry: it must be one lower-case piece without spaces", nameof(words));
            if (!seen.Add(word))
                throw new ArgumentException($"'{word}' is a special token or appears twice", nameof(words));
            tokens.Add(word);
        }
        tokens.Add(DecToken);
        tokens.Add(EncToken);
        return tokens;
    }

    /// <summary>Writes the three tokenizer files into <paramref name="folder"/>; returns the tokens in id order.</summary>
    public static IReadOnlyList<string> Write(string folder, IEnumerable<string> words, int modelMaxLength)
    {
        var tokens = Tokens(words);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "vocab.txt"), string.Concat(tokens.Select(t => t + "\n")), new UTF8Encoding(false));

        var specialIds = Enumerable.Range(0, LeadingSpecialTokens.Count).Concat([tokens.Count - 2, tokens.Count - 1]);
        var addedTokens = new JsonObject();
        foreach (var id in specialIds)
        {
            addedTokens[id.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = tokens[id],
                ["lstrip"] = false,
                ["normalized"] = false,
                ["rstrip"] = false,
                ["single_word"] = false,
                ["special"] = true,
            };
        }

        var config = new JsonObject { ["added_tokens_decoder"] = addedTokens };
        foreach (var (key, value) in SpecialTokensMap()) config[key] = value?.DeepClone();
        config["clean_up_tokenization_spaces"] = true;
        config["do_basic_tokenize"] = true;
        config["do_lower_case"] = true;
        config["model_max_length"] = modelMaxLength;
        config["never_split"] = null;
        config["processor_class"] = "BlipProcessor";
        config["strip_accents"] = null;
        config["tokenize_chinese_chars"] = true;
        config["tokenizer_class"] = "BertTokenizer";
        WriteJson(Path.Combine(folder, "tokenizer_config.json"), config);
        WriteJson(Path.Combine(folder, "special_tokens_map.json"), SpecialTokensMap());
        return tokens;
    }

    private static JsonObject SpecialTokensMap() => new()
    {
        ["additional_special_tokens"] = new JsonArray(EncToken),
        ["bos_token"] = DecToken,
        ["cls_token"] = "[CLS]",
        ["mask_token"] = "[MASK]",
        ["pad_token"] = "[PAD]",
        ["sep_token"] = "[SEP]",
        ["unk_token"] = "[UNK]",
    };

    private static void WriteJson(string path, JsonObject o) =>
        File.WriteAllText(path, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
