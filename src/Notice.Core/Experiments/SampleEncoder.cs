using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm.Blip;
using Notice.Vlm.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Experiments;

/// <summary>A manifest sample turned into model inputs, with the prompt's tokens for results.</summary>
public sealed record EncodedSample(PairRecord Record, PatchingInputs Inputs, string[] CleanTokens, string CorrectToken, string IncorrectToken, int AnswerPosition);

/// <summary>
/// Turns a pairs-manifest record into BLIP inputs: images preprocessed, prompts tokenised, the
/// answer tokens taken as the first WordPiece of each answer word (as the original does).
/// </summary>
public sealed class BlipSampleEncoder(BlipVqa vqa, string manifestPath = "")
{
    private readonly HashSet<string> _warned = new();

    /// <summary>Called once per answer word that splits into several pieces.</summary>
    public Action<string>? Warn { get; init; }

    /// <summary>A manifest record, its images read from the files it names.</summary>
    public EncodedSample Encode(PairRecord record)
    {
        var r = PairsManifest.Resolve(manifestPath, record);
        return Encode(r, ImageDecoder.Load(r.Image), r.Image, ImageDecoder.Load(r.CorruptImage), r.CorruptImage);
    }

    /// <summary>A record whose images are already decoded; the keys identify them for the image cache.</summary>
    public EncodedSample Encode(PairRecord r, RgbImage image, string imageKey, RgbImage corruptImage, string corruptImageKey)
    {
        var clean = new ImageInput(imageKey, vqa.Pixels(image));
        var corrupt = new ImageInput(corruptImageKey, vqa.Pixels(corruptImage));
        var cleanIds = vqa.EncodeQuestion(r.Prompt);
        var corruptIds = r.CorruptPrompt is null ? null : vqa.EncodeQuestion(r.CorruptPrompt);
        long correct = AnswerToken(r.Answer), incorrect = AnswerToken(r.WrongAnswer);
        if (correct == incorrect)
            throw new ArgumentException($"sample {r.Id}: answer '{r.Answer}' and wrong answer '{r.WrongAnswer}' start with the same token");
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
        if (ids.Length > 3 && _warned.Add(word))
            Warn?.Invoke($"answer '{word}' splits into {ids.Length - 2} word pieces; its first piece '{vqa.Tokenizer.IdToToken(ids[1])}' is used, as the original code does");
        return ids[1];
    }
}
