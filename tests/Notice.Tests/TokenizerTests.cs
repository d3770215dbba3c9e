using System.Text.Json;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Text;

namespace Notice.Tests;

/// <summary>
/// The BLIP (BERT WordPiece) and LLaVA (LLaMA sentencepiece) tokenizers against the ids, tokens
/// and decodes that transformers 4.41 produced for the tiny reference checkpoints.
/// </summary>
public class TokenizerTests
{
    private static readonly Lazy<BlipTokenizer> Blip = new(() => BlipTokenizer.Load(Fixtures.BlipTiny));
    private static readonly Lazy<LlamaTokenizer> Llama = new(() => LlamaTokenizer.Load(Fixtures.LlavaTiny));

    // ---- BLIP ----

    [Fact]
    public void BlipSpecialIdsComeFromTheCheckpoint()
    {
        var t = Blip.Value;
        Assert.Equal((0, 1, 2, 3, 4), (t.PadId, t.UnkId, t.ClsId, t.SepId, t.MaskId));
        Assert.Equal((105, 106, 107), (t.DecId, t.EncId, t.VocabSize));
        Assert.Equal("[DEC]", t.IdToToken(t.DecId));
        Assert.Equal(t.EncId, t.TokenToId("[ENC]"));
    }

    public static TheoryData<string> BlipCases() => new(Enumerable.Range(0, 6).Select(i => $"case{i}"));

    [Theory]
    [MemberData(nameof(BlipCases))]
    public void BlipEncodesEachReferenceQuestion(string name)
    {
        var c = ReferenceCase(Fixtures.BlipTiny, name);
        string question = c.GetProperty("questions")[0].GetString()!;
        var expectedTokens = Strings(c.GetProperty("input_tokens")[0]);
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "reference.safetensors"));

        int[] ids = Blip.Value.Encode(question);

        Assert.Equal(Longs(reference, $"{name}.input_ids"), ids.Select(i => (long)i).ToArray());
        Assert.Equal(expectedTokens, new[] { "[CLS]" }.Concat(Blip.Value.Tokenize(question)).Append("[SEP]").ToArray());
        Assert.Equal(expectedTokens, ids.Select(Blip.Value.IdToToken).ToArray());
    }

    [Theory]
    [InlineData("batch")]
    [InlineData("batch_nomask")]
    public void BlipRightPadsABatchToTheLongestQuestion(string name)
    {
        var c = ReferenceCase(Fixtures.BlipTiny, name);
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "reference.safetensors"));

        var (ids, mask) = Blip.Value.EncodeBatch(Strings(c.GetProperty("questions")));

        Assert.Equal(Longs(reference, $"{name}.input_ids"), Flatten(ids));
        Assert.Equal(Longs(reference, $"{name}.attention_mask"), Flatten(mask));
        Assert.Equal(Strings(c.GetProperty("input_tokens")[0]), Row(ids, 0).Select(i => Blip.Value.IdToToken((int)i)));
    }

    /// <summary>The three-row batches the original NOTICE patching code builds (image and text modes).</summary>
    [Fact]
    public void BlipReproducesTheNoticePatchingBatches()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixtures.BlipTiny, "notice_patching.json")));
        using var patching = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        foreach (var sample in doc.RootElement.GetProperty("samples").EnumerateArray())
        {
            string key = sample.GetProperty("key").GetString()!;
            var row = sample.GetProperty("df_row");
            string clean = row.GetProperty("clean_prompt").GetString()!, corrupt = row.GetProperty("corrupt_prompt").GetString()!;
            string[] prompts = sample.GetProperty("mode").GetString() == "image" ? [clean, clean, clean] : [clean, corrupt, corrupt];

            var (ids, mask) = Blip.Value.EncodeBatch(prompts);

            Assert.Equal(Longs(patching, $"{key}.inputs.input_ids"), Flatten(ids));
            Assert.Equal(Longs(patching, $"{key}.inputs.attention_mask"), Flatten(mask));
            // Answer token = element 1 of the answer's ids, right after [CLS].
            long[] answers = [Blip.Value.Encode(row.GetProperty("correct_answer").GetString()!)[1],
                Blip.Value.Encode(row.GetProperty("incorrect_answer").GetString()!)[1]];
            Assert.Equal(Longs(patching, $"{key}.answer_tokens"), answers);
        }
    }

    [Theory]
    [InlineData("red", 8)]
    [InlineData("blue", 10)]
    [InlineData("happy", 14)]
    [InlineData("angry", 15)]
    public void BlipAnswerWordsAreSingleTokens(string answer, int id) =>
        Assert.Equal([Blip.Value.ClsId, id, Blip.Value.SepId], Blip.Value.Encode(answer));

    [Fact]
    public void BlipDecodesLikeBertTokenizer()
    {
        var t = Blip.Value;
        Assert.Equal("is the circle red or blue?", t.Decode(t.Encode("Is the circle red or blue?")));
        Assert.Equal("is the person on the right feeling happy or angry?",
            t.Decode(t.Encode("Is the person on the right feeling happy or angry?")));
        // generate() output of case0: [DEC] red [SEP].
        Assert.Equal("red", t.Decode([105, 8, 3]));
        // "##" pieces glue onto the word before; specials and padding vanish.
        Assert.Equal("shapes sliced.", t.Decode([t.ClsId, t.TokenToId("shape"), t.TokenToId("##s"), t.TokenToId("sliced"), t.TokenToId("."), t.SepId, t.PadId]));
    }

    /// <summary>
    /// BasicTokenizer details (expected values worked out from transformers' BertTokenizer code):
    /// tabs are spaces, every ASCII punctuation mark ("$" included) is its own word, accents are
    /// stripped, special tokens are matched case-sensitively before lower-casing.
    /// </summary>
    [Fact]
    public void BlipFollowsBasicTokenizerOnEdgeCases()
    {
        var t = Blip.Value;
        Assert.Equal(["red", "blue"], t.Tokenize("Red\tBLUE"));
        Assert.Equal(["red", "[UNK]", "blue"], t.Tokenize("red$blue"));
        Assert.Equal(["red", "?"], t.Tokenize("Rèd?"));
        Assert.Equal(["walking", "dog", "##s", ","], t.Tokenize("walking dogs,"));
        Assert.Equal(["[DEC]", "red", "[UNK]", "[UNK]", "[UNK]"], t.Tokenize("[DEC]red [dec]"));
        Assert.Equal([t.ClsId, t.SepId], t.Encode(""));
    }

    [Fact]
    public void BlipWithoutVocabularyNamesTheMissingFile()
    {
        using var dir = new TempCopy(Fixtures.BlipTiny, "tokenizer_config.json", "special_tokens_map.json");
        var e = Assert.Throws<CheckpointException>(() => BlipTokenizer.Load(dir.Path));
        Assert.Equal(Path.Combine(dir.Path, "vocab.txt"), e.File);
        Assert.Contains("vocab.txt", e.Message);
    }

    [Fact]
    public void BlipVocabularyWithoutASpecialTokenNamesFileAndToken()
    {
        using var dir = new TempCopy(Fixtures.BlipTiny, "tokenizer_config.json", "special_tokens_map.json");
        File.WriteAllLines(Path.Combine(dir.Path, "vocab.txt"),
            File.ReadAllLines(Path.Combine(Fixtures.BlipTiny, "vocab.txt")).Where(l => l != "[ENC]"));
        var e = Assert.Throws<CheckpointException>(() => BlipTokenizer.Load(dir.Path));
        Assert.EndsWith("vocab.txt", e.File);
        Assert.Contains("[ENC]", e.Message);
    }

    // ---- LLaVA ----

    [Fact]
    public void LlamaSpecialIdsComeFromTheCheckpoint()
    {
        var t = Llama.Value;
        Assert.Equal((1, 2, 0, 401, 400, 402), (t.BosId, t.EosId, t.UnkId, t.PadId, t.ImageTokenId, t.VocabSize));
        Assert.Equal("<image>", t.IdToToken(400));
        Assert.Equal("<0x0A>", t.IdToToken(13));
        Assert.Equal(309, t.TokenToId("\u2581red"));
        Assert.Equal(t.UnkId, t.TokenToId("no such piece"));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.IdToToken(402));
    }

    public static TheoryData<int> LlamaProbes() => new(Enumerable.Range(0, ReferenceJson(Fixtures.LlavaTiny)
        .GetProperty("tokenizer").GetProperty("probes").GetArrayLength()));

    /// <summary>reference.json tokenizer.probes: ids, tokens and both decodes of edge cases.</summary>
    [Theory]
    [MemberData(nameof(LlamaProbes))]
    public void LlamaMatchesEachTokenizerProbe(int index)
    {
        var probe = ReferenceJson(Fixtures.LlavaTiny).GetProperty("tokenizer").GetProperty("probes")[index];
        string text = probe.GetProperty("text").GetString()!;
        int[] expectedIds = probe.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var t = Llama.Value;

        int[] ids = t.Encode(text);

        Assert.Equal(expectedIds, ids);
        Assert.Equal(Strings(probe.GetProperty("tokens")), ids.Select(t.IdToToken).ToArray());
        Assert.Equal(Strings(probe.GetProperty("tokens")).Skip(1), t.Tokenize(text));
        Assert.Equal(probe.GetProperty("decode_skip_special").GetString(), t.Decode(ids));
        Assert.Equal(probe.GetProperty("decode").GetString(), t.Decode(ids, skipSpecialTokens: false));
    }

    public static TheoryData<string> LlamaCases() => new(Enumerable.Range(0, 6).Select(i => $"case{i}"));

    [Theory]
    [MemberData(nameof(LlamaCases))]
    public void LlamaEncodesEachReferencePrompt(string name)
    {
        var c = ReferenceCase(Fixtures.LlavaTiny, name);
        string prompt = LlavaPrompt.Format(c.GetProperty("questions")[0].GetString()!);
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
        var t = Llama.Value;

        int[] ids = t.Encode(prompt);

        Assert.Equal(c.GetProperty("prompts")[0].GetString(), prompt);
        Assert.Equal(Longs(reference, $"{name}.input_ids"), ids.Select(i => (long)i).ToArray());
        Assert.Equal(Strings(c.GetProperty("input_tokens")[0]), ids.Select(t.IdToToken).ToArray());
        // generate's new tokens and the whole sequence, decoded with skip_special_tokens.
        int[] generated = c.GetProperty("generate_new_ids")[0].EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(c.GetProperty("generate_new_text")[0].GetString(), t.Decode(generated));
        Assert.Equal(c.GetProperty("generate_full_text")[0].GetString(), t.Decode([.. ids, .. generated]));
    }

    [Fact]
    public void LlamaLeftPadsABatchWithPad()
    {
        var c = ReferenceCase(Fixtures.LlavaTiny, "batch");
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));

        var (ids, mask) = Llama.Value.EncodeBatch(Strings(c.GetProperty("prompts")));

        Assert.Equal(Longs(reference, "batch.input_ids"), Flatten(ids));
        Assert.Equal(Longs(reference, "batch.attention_mask"), Flatten(mask));
        Assert.Equal(Strings(c.GetProperty("input_tokens")[0]), Row(ids, 0).Select(i => Llama.Value.IdToToken((int)i)));
    }

    /// <summary>The prompts and answer tokens of the original NOTICE LLaVA patching runs.</summary>
    [Fact]
    public void LlamaReproducesTheNoticePatchingInputs()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixtures.LlavaTiny, "notice_patching.json")));
        using var patching = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "notice_patching.safetensors"));
        var t = Llama.Value;
        foreach (var sample in doc.RootElement.GetProperty("samples").EnumerateArray())
        {
            string key = sample.GetProperty("key").GetString()!;
            foreach (var run in new[] { "clean", "corrupt" })
            {
                int[] ids = t.Encode(sample.GetProperty($"{run}_prompt").GetString()!);
                Assert.Equal(Longs(patching, $"{key}.inputs.{run}.input_ids"), ids.Select(i => (long)i).ToArray());
            }
            // Answer token = the last piece of the answer's ids ("▁red").
            var answers = sample.GetProperty("answer_tokens");
            long[] answerIds = [t.Encode(answers.GetProperty("correct")[0].GetString()!)[^1],
                t.Encode(answers.GetProperty("incorrect")[0].GetString()!)[^1]];
            Assert.Equal(Longs(patching, $"{key}.answer_tokens"), answerIds);
        }
    }

    /// <summary>
    /// legacy=false (transformers' newer behaviour; expected values worked out from its
    /// LlamaTokenizer code): only the start of the text gets a "▁", chunks after an added token
    /// do not, and decoding keeps no space before a special token.
    /// </summary>
    [Fact]
    public void LlamaHonoursLegacyFalse()
    {
        using var dir = new TempCopy(Fixtures.LlavaTiny, "tokenizer.model", "special_tokens_map.json", "added_tokens.json");
        var config = File.ReadAllText(Path.Combine(Fixtures.LlavaTiny, "tokenizer_config.json")).Replace("\"legacy\": true", "\"legacy\": false");
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"), config);
        var t = LlamaTokenizer.Load(dir.Path);

        int[] ids = t.Encode("USER: <image>\nIs it red?");

        Assert.Equal([1, 279, 381, 365, 400, 13, 292, 365, 329, 309, 387], ids);
        Assert.Equal("USER: \nIs it red?", t.Decode(ids));
        Assert.Equal(["<image>", "<0x0A>"], t.Tokenize("<image>\n"));
    }

    [Fact]
    public void LlamaWithoutModelNamesTheMissingFile()
    {
        using var dir = new TempCopy(Fixtures.LlavaTiny, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json");
        var e = Assert.Throws<CheckpointException>(() => LlamaTokenizer.Load(dir.Path));
        Assert.Equal(Path.Combine(dir.Path, "tokenizer.model"), e.File);
        Assert.Contains("tokenizer.model", e.Message);
    }

    [Fact]
    public void LlamaWithACorruptModelNamesTheFile()
    {
        using var dir = new TempCopy(Fixtures.LlavaTiny, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json");
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.model"), "not a protobuf");
        var e = Assert.Throws<CheckpointException>(() => LlamaTokenizer.Load(dir.Path));
        Assert.EndsWith("tokenizer.model", e.File);
    }

    // ---- helpers ----

    private static JsonElement ReferenceJson(string folder)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "reference.json")));
        return doc.RootElement.Clone();
    }

    private static JsonElement ReferenceCase(string folder, string name) =>
        ReferenceJson(folder).GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    private static string[] Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToArray();

    private static long[] Longs(SafeTensorsFile file, string name)
    {
        using var tensor = file.Read(name);
        return tensor.data<long>().ToArray();
    }

    private static long[] Flatten(long[,] a) => a.Cast<long>().ToArray();

    private static IEnumerable<long> Row(long[,] a, int row) => Enumerable.Range(0, a.GetLength(1)).Select(j => a[row, j]);

    /// <summary>A temporary folder holding copies of some fixture files; deleted on dispose.</summary>
    private sealed class TempCopy : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("notice-tok-").FullName;

        public TempCopy(string from, params string[] files)
        {
            foreach (var f in files) File.Copy(System.IO.Path.Combine(from, f), System.IO.Path.Combine(Path, f));
        }

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
