using System.Text.Json;
using Microsoft.ML.Tokenizers;
using Notice.Vlm.Checkpoints;
using SentencePieceModel = Microsoft.ML.Tokenizers.SentencePieceTokenizer;

namespace Notice.Vlm.Text;

/// <summary>
/// LLaVA's text tokenizer: transformers' slow LlamaTokenizer. The sentencepiece BPE itself
/// (tokenizer.model: merges by piece score, byte fallback) is Microsoft.ML.Tokenizers'; around it
/// this class does what transformers adds and Microsoft.ML.Tokenizers does not reproduce: the text
/// is first cut on the added/special token strings (&lt;image&gt;, &lt;pad&gt;, &lt;s&gt;, ...), and with
/// legacy=true each remaining chunk is encoded on its own and so gets its own leading "▁"
/// ("a&lt;image&gt;b" -> ▁a &lt;image&gt; ▁ b). add_bos_token/add_eos_token wrap the result.
/// </summary>
public sealed class LlamaTokenizer
{
    internal const char SpaceSymbol = '\u2581';

    private readonly SentencePieceModel _model;
    private readonly string[] _pieceOf;
    private readonly IReadOnlyDictionary<string, int> _addedIdOf;
    private readonly IReadOnlyDictionary<int, string> _addedTokenOf;
    private readonly AddedTokenSplitter _addedTokens;
    private readonly HashSet<string> _specialTokens;
    private readonly HashSet<int> _specialIds;
    private readonly HashSet<string> _legacyAddedTokens;
    private readonly SentencePieceDecoder _decoder;
    private readonly SentencePieceNormalizer _noPrefixNormalizer;
    private readonly bool _legacy, _addBos, _addEos, _addPrefixSpace, _cleanUpSpaces, _padLeft;
    private readonly string _unkToken;

    public int BosId { get; }
    public int EosId { get; }
    public int UnkId { get; }
    public int PadId { get; }
    public int ImageTokenId { get; }
    /// <summary>Pieces of tokenizer.model plus added tokens beyond them (len(tokenizer)).</summary>
    public int VocabSize { get; }

    private LlamaTokenizer(SentencePieceModel model, Dictionary<string, int> addedIdOf, TokenizerSettings settings)
    {
        _model = model;
        _pieceOf = new string[model.Vocabulary.Count];
        foreach (var (piece, id) in model.Vocabulary) _pieceOf[id] = piece;
        _addedIdOf = addedIdOf;
        _addedTokenOf = addedIdOf.ToDictionary(kv => kv.Value, kv => kv.Key);
        VocabSize = _pieceOf.Length + addedIdOf.Values.Count(id => id >= _pieceOf.Length);

        // transformers' defaults for LlamaTokenizer where tokenizer_config.json is silent.
        _legacy = settings.Bool("legacy", true);
        _addBos = settings.Bool("add_bos_token", true);
        _addEos = settings.Bool("add_eos_token", false);
        _addPrefixSpace = settings.Bool("add_prefix_space", true);
        _cleanUpSpaces = settings.Bool("clean_up_tokenization_spaces", false);
        _padLeft = settings.String("padding_side", "left") == "left";

        int SpecialId(string token) => TryGetId(token)
            ?? throw new CheckpointException(settings.ConfigPath, $"special token {token} is neither a piece of tokenizer.model nor an added token");
        _unkToken = settings.RequiredToken("unk_token");
        string bos = settings.RequiredToken("bos_token"), eos = settings.RequiredToken("eos_token"), pad = settings.RequiredToken("pad_token");
        var additional = settings.TokenList("additional_special_tokens");
        UnkId = SpecialId(_unkToken);
        BosId = SpecialId(bos);
        EosId = SpecialId(eos);
        PadId = SpecialId(pad);
        ImageTokenId = SpecialId(LlavaPrompt.ImageToken);
        _specialTokens = [_unkToken, bos, eos, pad, .. additional];
        _specialIds = _specialTokens.Select(SpecialId).ToHashSet();

        // Decoding keeps these apart from the pieces around them and joins them with spaces
        // (transformers' "legacy added tokens": added tokens that are not special, and additional
        // special tokens beyond the sentencepiece vocabulary, such as <image>).
        _legacyAddedTokens = addedIdOf.Keys.Where(t => !_specialTokens.Contains(t))
            .Concat(additional.Where(t => SpecialId(t) >= _pieceOf.Length)).ToHashSet();

        _addedTokens = new AddedTokenSplitter(addedIdOf.Keys.Concat(_specialTokens));
        var normalizer = (SentencePieceNormalizer)model.Normalizer!;
        // legacy=false loads the model with add_dummy_prefix off (transformers' get_spm_processor).
        _noPrefixNormalizer = new SentencePieceNormalizer(normalizer.RemoveExtraWhiteSpaces, addDummyPrefix: false,
            normalizer.EscapeWhiteSpaces, normalizer.TreatWhitespaceAsSuffix, specialTokens: null);
        _decoder = new SentencePieceDecoder(model.Vocabulary, model.ByteFallback,
            stripDummyPrefix: _legacy && model.AddDummyPrefix, normalizer.RemoveExtraWhiteSpaces);
    }

    /// <summary>
    /// Loads tokenizer.model (a sentencepiece ModelProto), tokenizer_config.json and, if present,
    /// special_tokens_map.json and added_tokens.json.
    /// </summary>
    public static LlamaTokenizer Load(string folder)
    {
        var modelPath = Path.Combine(folder, "tokenizer.model");
        if (!File.Exists(modelPath)) throw new CheckpointException(modelPath, "file not found");
        var settings = TokenizerSettings.Load(folder);
        SentencePieceModel model;
        using (var stream = new MemoryStream(InputFiles.ReadAllBytes(modelPath, InputFiles.MaxSideFileBytes, problem => new CheckpointException(modelPath, problem)), writable: false))
        {
            try
            {
                // No special tokens here: they are cut out of the text before the model sees it.
                model = Microsoft.ML.Tokenizers.LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
            }
            catch (Exception e)  // protobuf parse errors, unsupported model types, ...
            {
                throw new CheckpointException(modelPath, $"not a readable sentencepiece model: {e.Message}");
            }
        }
        if (model.Normalizer is not SentencePieceNormalizer)
            throw new CheckpointException(modelPath, "expected a sentencepiece normaliser");
        return new LlamaTokenizer(model, ReadAddedTokens(folder, settings), settings);
    }

    /// <summary>The pieces of <paramref name="text"/> (added tokens whole), without BOS/EOS.</summary>
    public string[] Tokenize(string text) => Pieces(text).Select(p => p.Value).ToArray();

    /// <summary>input_ids for one text: BOS (add_bos_token), the pieces, EOS (add_eos_token).</summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>();
        if (_addBos) ids.Add(BosId);
        ids.AddRange(Pieces(text).Select(p => p.Id));
        if (_addEos) ids.Add(EosId);
        return ids.ToArray();
    }

    /// <summary>
    /// Several texts padded with &lt;pad&gt; to the longest (on the left, padding_side "left"), with
    /// the attention mask (0 at padding), as LlavaProcessor(padding=True) returns them.
    /// </summary>
    public (long[,] Ids, long[,] AttentionMask) EncodeBatch(IReadOnlyList<string> texts) =>
        Padding.Pad(texts.Select(Encode).ToArray(), PadId, _padLeft);

    /// <summary>
    /// Text of <paramref name="ids"/> as transformers' LlamaTokenizer.decode gives it; by default
    /// with skip_special_tokens=True, as generated answers are read.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        var tokens = ids.Where(id => !(skipSpecialTokens && _specialIds.Contains(id))).Select(IdToToken);
        // Legacy added tokens stand alone; the runs of tokens between them are decoded separately.
        var parts = new List<string>();
        var run = new List<string>();
        foreach (var token in tokens)
        {
            if (!_legacyAddedTokens.Contains(token)) { run.Add(token); continue; }
            if (run.Count > 0 && TokensToString(run) is { Length: > 0 } text) parts.Add(text);
            run.Clear();
            parts.Add(token);
        }
        if (run.Count > 0) parts.Add(TokensToString(run));
        // decode's spaces_between_special_tokens defaults to True whatever tokenizer_config.json says.
        string joined = string.Join(" ", parts);
        return _cleanUpSpaces ? TokenizationSpaces.CleanUp(joined) : joined;
    }

    /// <summary>The id of an added token or piece; &lt;unk&gt;'s id for anything else (as transformers).</summary>
    public int TokenToId(string token) => TryGetId(token) ?? UnkId;

    /// <summary>The added token or piece of an id; ids beyond the tokenizer (unused LM rows) throw.</summary>
    public string IdToToken(int id)
    {
        if (_addedTokenOf.TryGetValue(id, out var added)) return added;
        if (id >= 0 && id < _pieceOf.Length) return _pieceOf[id];
        throw new ArgumentOutOfRangeException(nameof(id), id, $"not a token id (the tokenizer has {VocabSize})");
    }

    private int? TryGetId(string token) =>
        _addedIdOf.TryGetValue(token, out int added) ? added : _model.Vocabulary.TryGetValue(token, out int piece) ? piece : null;

    private List<EncodedToken> Pieces(string text)
    {
        if (_legacy || text.Length == 0) return EncodeChunks(text, EncodeLegacyChunk);

        // legacy=false: one leading "▁" for the whole text, none per chunk; a lone "▁" before a
        // special token is dropped (transformers' LlamaTokenizer.tokenize).
        text = text.Replace(SpaceSymbol, ' ');
        if (_addPrefixSpace) text = SpaceSymbol + text;
        var pieces = EncodeChunks(text, EncodeChunkWithoutPrefix);
        if (pieces.Count > 1 && pieces[0].Value == SpaceSymbol.ToString() && _specialTokens.Contains(pieces[1].Value)) pieces.RemoveAt(0);
        return pieces;
    }

    private List<EncodedToken> EncodeChunks(string text, Func<string, IEnumerable<EncodedToken>> encodeChunk)
    {
        var pieces = new List<EncodedToken>();
        foreach (var (chunk, isAddedToken) in _addedTokens.Split(text))
        {
            if (isAddedToken) pieces.Add(new EncodedToken(TryGetId(chunk)!.Value, chunk, default));
            else pieces.AddRange(encodeChunk(chunk));
        }
        return pieces;
    }

    // sentencepiece as loaded: identity normaliser, spaces -> "▁", add_dummy_prefix.
    private IEnumerable<EncodedToken> EncodeLegacyChunk(string chunk) =>
        _model.EncodeToTokens(chunk, out _, addBeginningOfSentence: false, addEndOfSentence: false,
            considerPreTokenization: false, considerNormalization: true);

    // transformers' non-legacy _tokenize: a chunk starting with a space is encoded behind the unk
    // token, which is then removed, so that sentencepiece keeps the chunk's leading "▁".
    private IEnumerable<EncodedToken> EncodeChunkWithoutPrefix(string chunk)
    {
        if (!chunk.StartsWith(SpaceSymbol) && !chunk.StartsWith(' ')) return EncodeWithoutPrefix(chunk);
        int unkLength = EncodeWithoutPrefix(_unkToken).Count;
        return EncodeWithoutPrefix(_unkToken + chunk).Skip(unkLength);
    }

    private IReadOnlyList<EncodedToken> EncodeWithoutPrefix(string text) =>
        _model.EncodeToTokens(_noPrefixNormalizer.Normalize(text), out _, addBeginningOfSentence: false, addEndOfSentence: false,
            considerPreTokenization: false, considerNormalization: false);

    // transformers' LlamaTokenizer.convert_tokens_to_string: special tokens are written as they
    // are, the pieces between them go through sentencepiece's decoder.
    private string TokensToString(List<string> tokens)
    {
        if (_addPrefixSpace && tokens[0].StartsWith(SpaceSymbol)) tokens[0] = tokens[0][1..];
        var text = new System.Text.StringBuilder();
        var pieces = new List<string>();
        bool previousSpecial = false;
        for (int i = 0; i < tokens.Count; i++)
        {
            if (_specialTokens.Contains(tokens[i]))
            {
                if (!previousSpecial && i != 0 && _legacy) text.Append(' ');
                text.Append(_decoder.Decode(pieces)).Append(tokens[i]);
                pieces.Clear();
                previousSpecial = true;
            }
            else
            {
                if (previousSpecial && i == 1 && _addPrefixSpace && !tokens[i].StartsWith(SpaceSymbol)) text.Append(' ');
                pieces.Add(tokens[i]);
                previousSpecial = false;
            }
        }
        return text.Append(_decoder.Decode(pieces)).ToString();
    }

    // added_tokens.json (token -> id) and tokenizer_config.json's added_tokens_decoder together.
    private static Dictionary<string, int> ReadAddedTokens(string folder, TokenizerSettings settings)
    {
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var path = Path.Combine(folder, "added_tokens.json");
        if (TokenizerSettings.ReadJson(path) is { } json)
        {
            if (json.ValueKind != JsonValueKind.Object) throw new CheckpointException(path, "expected an object of token -> id");
            foreach (var entry in json.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id))
                    throw new CheckpointException(path, $"token {entry.Name} has no integer id");
                added[entry.Name] = id;
            }
        }
        foreach (var (id, token) in settings.AddedTokensDecoder()) added[token] = id;
        return added;
    }
}
