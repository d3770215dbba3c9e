using System.Text;
using Microsoft.ML.Tokenizers;
using Notice.Vlm.Checkpoints;

namespace Notice.Vlm.Text;

/// <summary>
/// BLIP's text tokenizer: transformers' slow BertTokenizer as BlipProcessor uses it. Special and
/// added tokens ([CLS], [DEC], ...) are cut out of the text first, case-sensitively; the rest goes
/// through BasicTokenizer's clean-up and punctuation splitting and then WordPiece
/// (Microsoft.ML.Tokenizers' WordPieceTokenizer). Encoding wraps the pieces in [CLS] ... [SEP].
/// </summary>
public sealed class BlipTokenizer
{
    private readonly WordPieceTokenizer _wordPiece;
    private readonly AddedTokenSplitter _addedTokens;
    private readonly IReadOnlyList<string> _tokenOf;
    private readonly IReadOnlyDictionary<string, int> _idOf;
    private readonly HashSet<int> _specialIds;
    private readonly bool _cleanUpSpaces;
    private readonly string _unkToken;

    public int PadId { get; }
    public int UnkId { get; }
    public int ClsId { get; }
    public int SepId { get; }
    public int MaskId { get; }
    /// <summary>bos_token [DEC]: the answer decoder's start token.</summary>
    public int DecId { get; }
    /// <summary>The first additional special token, [ENC].</summary>
    public int EncId { get; }
    public int VocabSize => _tokenOf.Count;

    private BlipTokenizer(WordPieceTokenizer wordPiece, IReadOnlyList<string> tokenOf, IReadOnlyDictionary<string, int> idOf,
        TokenizerSettings settings, Func<string, int> specialId)
    {
        _wordPiece = wordPiece; _tokenOf = tokenOf; _idOf = idOf;
        _cleanUpSpaces = settings.Bool("clean_up_tokenization_spaces", true);
        _unkToken = settings.RequiredToken("unk_token");
        PadId = specialId(settings.RequiredToken("pad_token"));
        UnkId = specialId(_unkToken);
        ClsId = specialId(settings.RequiredToken("cls_token"));
        SepId = specialId(settings.RequiredToken("sep_token"));
        MaskId = specialId(settings.RequiredToken("mask_token"));
        DecId = specialId(settings.RequiredToken("bos_token"));
        // BLIP takes the first additional special token, [ENC], as the image-grounded encoder's start.
        var additional = settings.TokenList("additional_special_tokens");
        EncId = specialId(additional.Count > 0 ? additional[0]
            : throw new CheckpointException(settings.ConfigPath, "no additional_special_tokens (BLIP needs [ENC])"));
        _specialIds = [PadId, UnkId, ClsId, SepId, MaskId, DecId, .. additional.Select(specialId)];

        // Every added token and every special token is cut out of the text whole.
        var added = settings.AddedTokensDecoder().Values.ToList();
        foreach (var token in added) specialId(token);
        _addedTokens = new AddedTokenSplitter(added.Concat(_specialIds.Select(id => tokenOf[id])));
    }

    /// <summary>Loads vocab.txt, tokenizer_config.json and (if present) special_tokens_map.json.</summary>
    public static BlipTokenizer Load(string folder)
    {
        var vocabPath = Path.Combine(folder, "vocab.txt");
        if (!File.Exists(vocabPath)) throw new CheckpointException(vocabPath, "file not found");
        var settings = TokenizerSettings.Load(folder);

        // One token per line, id = line number, as BertTokenizer's load_vocab reads it.
        byte[] vocabBytes = InputFiles.ReadAllBytes(vocabPath, InputFiles.MaxSideFileBytes, problem => new CheckpointException(vocabPath, problem));
        string[] tokenOf = Encoding.UTF8.GetString(vocabBytes).Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        if (tokenOf.Length > 0 && tokenOf[^1].Length == 0) tokenOf = tokenOf[..^1];
        var idOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokenOf.Length; i++) idOf[tokenOf[i]] = i;

        int SpecialId(string token) => idOf.TryGetValue(token, out int id) ? id
            : throw new CheckpointException(vocabPath, $"special token {token} is not in the vocabulary");

        bool lowerCase = settings.Bool("do_lower_case", true);
        var wordPiece = WordPieceTokenizer.Create(new MemoryStream(vocabBytes), new WordPieceOptions
        {
            Normalizer = new BertBasicNormalizer(lowerCase,
                // BasicTokenizer strips accents when asked to, or by default when lower-casing.
                stripAccents: settings.OptionalBool("strip_accents") ?? lowerCase,
                spaceCjk: settings.Bool("tokenize_chinese_chars", true)),
            PreTokenizer = new BertPunctuationPreTokenizer(),
            UnknownToken = settings.RequiredToken("unk_token"),
        });
        return new BlipTokenizer(wordPiece, tokenOf, idOf, settings, SpecialId);
    }

    /// <summary>The pieces of <paramref name="text"/>, without [CLS]/[SEP].</summary>
    public string[] Tokenize(string text) => Pieces(text).Select(p => p.Token).ToArray();

    /// <summary>[CLS] pieces [SEP], as BlipProcessor's input_ids for one question.</summary>
    public int[] Encode(string text) => [ClsId, .. Pieces(text).Select(p => p.Id), SepId];

    /// <summary>
    /// Several questions right-padded with [PAD] to the longest, with the attention mask (1 for
    /// tokens, 0 for padding), as BlipProcessor(padding=True) returns them.
    /// </summary>
    public (long[,] Ids, long[,] AttentionMask) EncodeBatch(IReadOnlyList<string> texts) => PadBatch(texts.Select(Encode).ToArray());

    /// <summary>Already encoded questions (see <see cref="Encode"/>) padded as <see cref="EncodeBatch"/> pads them.</summary>
    public (long[,] Ids, long[,] AttentionMask) PadBatch(IReadOnlyList<int[]> encoded) => Padding.Pad(encoded, PadId, padLeft: false);

    /// <summary>
    /// Text of <paramref name="ids"/> with special tokens skipped, as BertTokenizer.decode(ids,
    /// skip_special_tokens=True): pieces joined by spaces, "##" continuations glued on, and (per
    /// clean_up_tokenization_spaces) the space before punctuation and contractions removed.
    /// </summary>
    public string Decode(IEnumerable<int> ids)
    {
        var tokens = ids.Where(id => !_specialIds.Contains(id)).Select(IdToToken);
        string text = string.Join(" ", tokens).Replace(" ##", "").Trim();
        return _cleanUpSpaces ? TokenizationSpaces.CleanUp(text) : text;
    }

    /// <summary>The id of a vocabulary token; [UNK]'s id for anything else (as transformers).</summary>
    public int TokenToId(string token) => _idOf.TryGetValue(token, out int id) ? id : UnkId;

    /// <summary>The vocabulary token of an id; [UNK] for ids outside it (as transformers).</summary>
    public string IdToToken(int id) => id >= 0 && id < _tokenOf.Count ? _tokenOf[id] : _unkToken;

    private IEnumerable<(string Token, int Id)> Pieces(string text)
    {
        foreach (var (chunk, isAddedToken) in _addedTokens.Split(text))
        {
            if (isAddedToken)
            {
                yield return (chunk, _idOf[chunk]);
                continue;
            }
            foreach (var piece in _wordPiece.EncodeToTokens(chunk, out _)) yield return (piece.Value, piece.Id);
        }
    }
}
