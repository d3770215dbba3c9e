using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm.Blip;
using Notice.Vlm.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Families.Blip;

/// <summary>
/// Turns a pairs-manifest record into BLIP inputs: images preprocessed, prompts tokenised, the
/// answer tokens taken as the first WordPiece of each answer word (as the original does).
/// </summary>
public sealed class BlipSampleEncoder(BlipVqa vqa, string manifestPath = "") : SampleEncoder(manifestPath)
{
    public override EncodedSample Encode(PairRecord r, RgbImage image, string imageKey, RgbImage corruptImage, string corruptImageKey)
    {
        var clean = new ImageInput(imageKey, vqa.Pixels(image));
        var corrupt = new ImageInput(corruptImageKey, vqa.Pixels(corruptImage));
        var cleanIds = vqa.EncodeQuestion(r.Prompt);
        var corruptIds = r.CorruptPrompt is null ? null : vqa.EncodeQuestion(r.CorruptPrompt);
        long correct = AnswerToken(r.Answer), incorrect = AnswerToken(r.WrongAnswer);
        CheckDistinct(r, correct, incorrect);
        var ids = cleanIds[0].data<long>().ToArray();
        var tokens = ids.Select(i => vqa.Tokenizer.IdToToken((int)i)).ToArray();
        int answerPos = Array.IndexOf(ids, correct);
        var inputs = new PatchingInputs(clean, corrupt, cleanIds, corruptIds, correct, incorrect);
        return new EncodedSample(r, inputs, tokens, vqa.Tokenizer.IdToToken((int)correct), vqa.Tokenizer.IdToToken((int)incorrect), answerPos);
    }

    private long AnswerToken(string word)
    {
        var ids = vqa.Tokenizer.Encode(word);   // [CLS] pieces... [SEP]
        if (ids.Length < 3) throw new ArgumentException($"answer '{word}' has no tokens");
        WarnOnce(word, ids.Length - 2, vqa.Tokenizer.IdToToken(ids[1]), "its first word piece, as the original code does");
        return ids[1];
    }
}
