using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm.Processing;
using Notice.Vlm.Qwen25Vl;
using TorchSharp;

namespace Notice.Core.Families.Qwen25Vl;

/// <summary>
/// Turns a pairs-manifest record into Qwen2.5-VL inputs as Qwen2_5_VLProcessor builds them: each
/// prompt in the chat template (<see cref="QwenPrompt.Format"/>: system turn, a user turn with the
/// image then the question, the assistant header; a prompt that already starts with
/// &lt;|im_start|&gt; is taken as the whole templated prompt), its one &lt;|image_pad|&gt; expanded to the
/// clean image's token count; images through the Qwen image processor (pixel rows and grid). The
/// answer token is the first token of each answer word as generated, at a line start with no
/// leading space (`green`, not `Ġgreen`: the fixture's choice); the answer position is where the
/// word first occurs in the question (`Ġgreen`, or the bare word at a line start).
/// </summary>
public sealed class Qwen25VlSampleEncoder(Qwen25VlVqa vqa, string manifestPath = "") : SampleEncoder(manifestPath)
{
    public override EncodedSample Encode(PairRecord r, RgbImage image, string imageKey, RgbImage corruptImage, string corruptImageKey)
    {
        var clean = Image(imageKey, image, r.Image);
        var corrupt = Image(corruptImageKey, corruptImage, r.CorruptImage);
        var grid = clean.Grid!.data<long>().ToArray();
        int tokens = vqa.ImageProcessor.ImageTokens((int)grid[0], (int)grid[1], (int)grid[2]);
        var ids = Prompt(r, r.Prompt, tokens);
        var corruptIds = r.CorruptPrompt is null ? null : Prompt(r, r.CorruptPrompt, tokens);
        long correct = AnswerToken(r.Answer), incorrect = AnswerToken(r.WrongAnswer);
        CheckDistinct(r, correct, incorrect);
        var inputs = new PatchingInputs(clean, corrupt, Tensor(ids), corruptIds is null ? null : Tensor(corruptIds), correct, incorrect);
        var names = ids.Select(vqa.Tokenizer.IdToToken).ToArray();
        int imageAt = Array.IndexOf(ids, vqa.Tokenizer.ImageTokenId);
        return new EncodedSample(r, inputs, names, vqa.Tokenizer.IdToToken((int)correct), vqa.Tokenizer.IdToToken((int)incorrect), AnswerPosition(ids, imageAt + tokens + 1, r.Answer))
        {
            QuestionStart = imageAt + tokens + 1,
            ImagePosition = imageAt,
        };
    }

    /// <summary>The templated prompt's ids, its image placeholder expanded; a bad placeholder count is a one-line error naming the sample.</summary>
    private int[] Prompt(PairRecord r, string prompt, int imageTokens)
    {
        var text = prompt.StartsWith(QwenTokenizer.ImStart, StringComparison.Ordinal) ? prompt : QwenPrompt.Format(prompt);
        try { return vqa.EncodePrompt(text, imageTokens); }
        catch (ArgumentException e) { throw new ArgumentException($"sample {r.Id}: {e.Message}"); }
    }

    private ImageInput Image(string key, RgbImage image, string name)
    {
        using var pixels = vqa.ImageProcessor.Preprocess([image], [name]);
        return new ImageInput(key, pixels.PixelValues.clone()) { Grid = pixels.GridThw.clone() };
    }

    private static torch.Tensor Tensor(int[] ids) => torch.tensor(ids.Select(i => (long)i).ToArray(), new long[] { 1, ids.Length });

    /// <summary>The first token of the word as the model generates it (line start, no leading space).</summary>
    private long AnswerToken(string word)
    {
        var pieces = vqa.Tokenizer.Encode(word);
        if (pieces.Length == 0) throw new ArgumentException($"answer '{word}' has no tokens");
        WarnOnce(word, pieces.Length, vqa.Tokenizer.IdToToken(pieces[0]), "its first token, at a line start");
        return pieces[0];
    }

    /// <summary>Where the answer word first occurs from the question on: its first token with its leading
    /// space (`Ġgreen`) or bare; -1 where it does not occur.</summary>
    private int AnswerPosition(int[] ids, int from, string word)
    {
        int spaced = vqa.Tokenizer.Encode(" " + word)[0], bare = vqa.Tokenizer.Encode(word)[0];
        for (int i = Math.Max(0, from); i < ids.Length; i++)
            if (ids[i] == spaced || ids[i] == bare) return i;
        return -1;
    }
}
