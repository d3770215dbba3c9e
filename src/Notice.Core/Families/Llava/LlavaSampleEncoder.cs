using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm.Llava;
using Notice.Vlm.Processing;
using Notice.Vlm.Text;

namespace Notice.Core.Families.Llava;

/// <summary>
/// Turns a pairs-manifest record into LLaVA inputs: each prompt in the llava-1.5 template
/// (`USER: &lt;image&gt;\n{prompt} ASSISTANT:`), images through the CLIP processor, and as the answer
/// token the first piece of each answer word (a lone "▁" skipped); with --compat original the last
/// piece, as the original code takes it.
/// </summary>
public sealed class LlavaSampleEncoder(LlavaVqa vqa, string manifestPath = "", CompatMode compat = CompatMode.Default) : SampleEncoder(manifestPath)
{
    public override EncodedSample Encode(PairRecord r, RgbImage image, string imageKey, RgbImage corruptImage, string corruptImageKey)
    {
        var clean = new ImageInput(imageKey, vqa.ImageProcessor.Preprocess(image).unsqueeze(0));
        var corrupt = new ImageInput(corruptImageKey, vqa.ImageProcessor.Preprocess(corruptImage).unsqueeze(0));
        var cleanIds = vqa.EncodePrompt(LlavaPrompt.Format(r.Prompt));
        var corruptIds = r.CorruptPrompt is null ? null : vqa.EncodePrompt(LlavaPrompt.Format(r.CorruptPrompt));
        long correct = AnswerToken(r.Answer), incorrect = AnswerToken(r.WrongAnswer);
        CheckDistinct(r, correct, incorrect);
        var ids = cleanIds[0].data<long>().ToArray();
        var tokens = ids.Select(i => vqa.Tokenizer.IdToToken((int)i)).ToArray();
        var inputs = new PatchingInputs(clean, corrupt, cleanIds, corruptIds, correct, incorrect);
        return new EncodedSample(r, inputs, tokens, vqa.Tokenizer.IdToToken((int)correct), vqa.Tokenizer.IdToToken((int)incorrect), Array.IndexOf(ids, correct))
        {
            QuestionStart = QuestionStart(ids),
            ImagePosition = Array.IndexOf(ids, (long)vqa.Tokenizer.ImageTokenId),
        };
    }

    /// <summary>Tokens before the question (the original's n_fmt: 8 for llava-1.5): as many as the
    /// prompt shares with the template's prefix tokenised alone.</summary>
    private int QuestionStart(long[] ids)
    {
        var prefix = vqa.Tokenizer.Encode(LlavaPrompt.Prefix);
        int n = 0;
        while (n < prefix.Length && n < ids.Length && prefix[n] == ids[n]) n++;
        return n;
    }

    private long AnswerToken(string word)
    {
        var ids = vqa.Tokenizer.Encode(word);
        var pieces = ids.SkipWhile((id, i) => i == 0 && id == vqa.Tokenizer.BosId).ToList();
        if (pieces.Count == 0) throw new ArgumentException($"answer '{word}' has no tokens");
        int id;
        string how;
        if (compat == CompatMode.Original)
        {
            id = LlavaOriginalCompat.AnswerPiece(pieces);
            how = "its last piece, as the original code does";
        }
        else
        {
            // A word the vocabulary lacks starts with a bare "▁" and continues in bytes: skip the space.
            id = pieces.Count > 1 && vqa.Tokenizer.IdToToken(pieces[0]) == "\u2581" ? pieces[1] : pieces[0];
            how = "its first piece";
        }
        WarnOnce(word, pieces.Count, vqa.Tokenizer.IdToToken(id), how);
        return id;
    }
}
