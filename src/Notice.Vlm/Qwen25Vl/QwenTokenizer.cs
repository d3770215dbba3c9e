using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Text;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>
/// transformers' slow Qwen2Tokenizer: byte-level BPE from vocab.json + merges.txt. Encoding:
/// NFC-normalise; cut the text on the added/special token strings (exact match, nothing stripped);
/// split each remaining chunk with Qwen2's pre-tokenizer regex; map each UTF-8 byte to its GPT-2
/// symbol; merge pairs by rank (lowest first, every occurrence left to right); look up vocab.json.
/// No BOS/EOS is added. Decoding maps symbols back to bytes and decodes UTF-8 with replacement
/// characters; nothing is inserted between tokens.
/// </summary>
/// <remarks>
/// Written here rather than on Microsoft.ML.Tokenizers: its BPE classes do not take the slow
/// tokenizer's added-token split, NFC step and Qwen2 regex together as transformers applies them,
/// and this whole algorithm is a page. The regex runs on .NET's UTF-16 strings: \p{L}/\p{N} do
/// not match letters outside the Basic Multilingual Plane (surrogate pairs), unlike Python's.
/// </remarks>
public sealed class QwenTokenizer
{
    /// <summary>Qwen2's pre-tokenizer pattern (Qwen2Tokenizer.PRETOKENIZE_REGEX).</summary>
    public const string PreTokenizePattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public const string ImagePad = "<|image_pad|>";
    public const string VisionStart = "<|vision_start|>";
    public const string VisionEnd = "<|vision_end|>";
    public const string ImStart = "<|im_start|>";
    public const string ImEnd = "<|im_end|>";
    public const string EndOfText = "<|endoftext|>";

    private static readonly Regex PreTokenizer = new(PreTokenizePattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
    private static readonly char[] ByteToSymbol = BytesToUnicode();
    private static readonly Dictionary<char, byte> SymbolToByte = Enumerable.Range(0, 256).ToDictionary(b => ByteToSymbol[b], b => (byte)b);

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<(string, string), int> _mergeRank;
    private readonly Dictionary<string, int> _addedIdOf;
    private readonly Dictionary<int, string> _tokenOf;
    private readonly HashSet<int> _specialIds;
    private readonly AddedTokenSplitter _addedTokens;
    private readonly ConcurrentDictionary<string, string[]> _bpeCache = new(StringComparer.Ordinal);
    private readonly bool _padLeft;

    public int PadId { get; }
    public int EosId { get; }
    public int ImageTokenId { get; }
    public int VisionStartId { get; }
    public int VisionEndId { get; }
    /// <summary>len(tokenizer): the vocabulary and the added tokens beyond it.</summary>
    public int VocabSize { get; }

    private QwenTokenizer(Dictionary<string, int> vocab, Dictionary<(string, string), int> mergeRank, Dictionary<string, int> addedIdOf,
        TokenizerSettings settings, string folder)
    {
        _vocab = vocab;
        _mergeRank = mergeRank;
        _addedIdOf = addedIdOf;
        _tokenOf = vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
        foreach (var (token, id) in addedIdOf) _tokenOf[id] = token;
        VocabSize = _tokenOf.Count;
        _padLeft = settings.String("padding_side", "left") == "left";

        int Required(string token, string role) => addedIdOf.TryGetValue(token, out int id) ? id
            : vocab.TryGetValue(token, out id) ? id
            : throw new CheckpointException(settings.ConfigPath, $"{role} {token} is not a token of this tokenizer (neither in added_tokens_decoder, added_tokens.json nor vocab.json of {folder})");
        string eos = settings.Token("eos_token") ?? ImEnd, pad = settings.Token("pad_token") ?? EndOfText;
        EosId = Required(eos, "eos_token");
        PadId = Required(pad, "pad_token");
        ImageTokenId = Required(ImagePad, "the image placeholder");
        VisionStartId = Required(VisionStart, "the vision start token");
        VisionEndId = Required(VisionEnd, "the vision end token");
        Required(ImStart, "the chat template's turn start");
        Required(ImEnd, "the chat template's turn end");

        // transformers' all_special_ids: eos, pad and additional_special_tokens (no bos/unk in Qwen2's files).
        var special = new HashSet<string>(settings.TokenList("additional_special_tokens"), StringComparer.Ordinal) { eos, pad };
        _specialIds = special.Where(t => addedIdOf.ContainsKey(t) || vocab.ContainsKey(t)).Select(t => Required(t, "special token")).ToHashSet();
        _addedTokens = new AddedTokenSplitter(addedIdOf.Keys);
    }

    /// <summary>
    /// Loads vocab.json, merges.txt, tokenizer_config.json (its added_tokens_decoder) and, if present,
    /// added_tokens.json and special_tokens_map.json.
    /// </summary>
    public static QwenTokenizer Load(string folder)
    {
        var settings = TokenizerSettings.Load(folder);
        var vocabPath = Path.Combine(folder, "vocab.json");
        var vocabJson = TokenizerSettings.ReadJson(vocabPath) ?? throw new CheckpointException(vocabPath, "file not found");
        if (vocabJson.ValueKind != JsonValueKind.Object) throw new CheckpointException(vocabPath, "expected an object of token -> id");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var e in vocabJson.EnumerateObject())
        {
            if (e.Value.ValueKind != JsonValueKind.Number || !e.Value.TryGetInt32(out int id))
                throw new CheckpointException(vocabPath, $"token {e.Name} has no integer id");
            vocab[e.Name] = id;
        }

        var mergesPath = Path.Combine(folder, "merges.txt");
        if (!File.Exists(mergesPath)) throw new CheckpointException(mergesPath, "file not found");
        var ranks = new Dictionary<(string, string), int>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(mergesPath, Encoding.UTF8))
        {
            lineNo++;
            if (line.StartsWith("#version") || line.Length == 0) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2) throw new CheckpointException(mergesPath, $"line {lineNo}: expected two symbols separated by one space, found \"{line}\"");
            ranks.TryAdd((parts[0], parts[1]), ranks.Count);
        }

        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var addedPath = Path.Combine(folder, "added_tokens.json");
        if (TokenizerSettings.ReadJson(addedPath) is { } json)
        {
            if (json.ValueKind != JsonValueKind.Object) throw new CheckpointException(addedPath, "expected an object of token -> id");
            foreach (var entry in json.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id))
                    throw new CheckpointException(addedPath, $"token {entry.Name} has no integer id");
                added[entry.Name] = id;
            }
        }
        foreach (var (id, token) in settings.AddedTokensDecoder()) added[token] = id;
        return new QwenTokenizer(vocab, ranks, added, settings, folder);
    }

    /// <summary>The tokens of <paramref name="text"/> (byte-level symbols; added tokens whole).</summary>
    public string[] Tokenize(string text)
    {
        var tokens = new List<string>();
        foreach (var (chunk, isToken) in _addedTokens.Split(text.Normalize(NormalizationForm.FormC)))
        {
            if (isToken) { tokens.Add(chunk); continue; }
            foreach (Match word in PreTokenizer.Matches(chunk))
                tokens.AddRange(Bpe(ToSymbols(word.Value)));
        }
        return tokens.ToArray();
    }

    /// <summary>input_ids of one text (no BOS/EOS).</summary>
    public int[] Encode(string text) => Tokenize(text).Select(TokenToId).ToArray();

    /// <summary>Several texts padded with the pad token (on the left, padding_side "left"), and the attention mask.</summary>
    public (long[,] Ids, long[,] AttentionMask) PadBatch(IReadOnlyList<int[]> rows) => Padding.Pad(rows, PadId, _padLeft);

    public int TokenToId(string token) =>
        _addedIdOf.TryGetValue(token, out int id) || _vocab.TryGetValue(token, out id) ? id
        : throw new ArgumentException($"'{token}' is not in the vocabulary (Qwen2Tokenizer has no unknown token)");

    public string IdToToken(int id) =>
        _tokenOf.TryGetValue(id, out var t) ? t : throw new ArgumentOutOfRangeException(nameof(id), id, $"not a token id (the tokenizer has {VocabSize})");

    /// <summary>
    /// Text of <paramref name="ids"/> as Qwen2Tokenizer.decode gives it (skip_special_tokens=True by
    /// default, as answers are read): the bytes of each run of ordinary tokens decoded as UTF-8
    /// (invalid sequences become U+FFFD), added tokens written as they are.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        var text = new StringBuilder();
        var bytes = new List<byte>();
        void Flush()
        {
            text.Append(Encoding.UTF8.GetString(bytes.ToArray()));
            bytes.Clear();
        }
        foreach (int id in ids)
        {
            if (skipSpecialTokens && _specialIds.Contains(id)) continue;
            var token = IdToToken(id);
            if (_addedIdOf.ContainsKey(token))
            {
                Flush();
                text.Append(token);
                continue;
            }
            foreach (char c in token) bytes.Add(SymbolToByte[c]);
        }
        Flush();
        return text.ToString();
    }

    private static string[] ToSymbols(string word) => Encoding.UTF8.GetBytes(word).Select(b => ByteToSymbol[b].ToString()).ToArray();

    /// <summary>GPT-2's bpe(): repeatedly merge the lowest-ranked adjacent pair, every occurrence left to right.</summary>
    private string[] Bpe(string[] symbols)
    {
        if (symbols.Length < 2) return symbols;
        var key = string.Concat(symbols);
        if (_bpeCache.TryGetValue(key, out var cached)) return cached;
        var word = symbols.ToList();
        while (word.Count > 1)
        {
            int bestRank = int.MaxValue;
            (string, string) best = default;
            for (int i = 0; i + 1 < word.Count; i++)
                if (_mergeRank.TryGetValue((word[i], word[i + 1]), out int rank) && rank < bestRank)
                {
                    bestRank = rank;
                    best = (word[i], word[i + 1]);
                }
            if (bestRank == int.MaxValue) break;
            var merged = new List<string>(word.Count);
            for (int i = 0; i < word.Count;)
            {
                if (i + 1 < word.Count && word[i] == best.Item1 && word[i + 1] == best.Item2)
                {
                    merged.Add(best.Item1 + best.Item2);
                    i += 2;
                }
                else merged.Add(word[i++]);
            }
            word = merged;
        }
        var result = word.ToArray();
        if (_bpeCache.Count < 100_000) _bpeCache.TryAdd(key, result);   // the tokenizer may be shared by threads
        return result;
    }

    /// <summary>GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.</summary>
    private static char[] BytesToUnicode()
    {
        var map = new char[256];
        var printable = new bool[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = printable[b] ? (char)b : (char)(256 + n++);
        return map;
    }
}
