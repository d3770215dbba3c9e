using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm.Blip;
using Notice.Vlm.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Experiments;

/// <summary>A manifest sample turned into model inputs, with the prompt's tokens for results.</summary>
/// <param name="CleanTokens">the clean prompt's tokens, one per input id (a result's position indexes them)</param>
/// <param name="AnswerPosition">the answer token's position in the clean prompt, -1 where it does not occur</param>
public sealed record EncodedSample(PairRecord Record, PatchingInputs Inputs, string[] CleanTokens, string CorrectToken, string IncorrectToken, int AnswerPosition)
{
    /// <summary>Tokens of the prompt template before the question (LLaVA's "USER: &lt;image&gt;\n"); 0 for BLIP.</summary>
    public int QuestionStart { get; init; }
    /// <summary>The position of LLaVA's &lt;image&gt; token; -1 for BLIP.</summary>
    public int ImagePosition { get; init; } = -1;
}

/// <summary>
/// Turns pairs-manifest records into one model family's inputs: images preprocessed, prompts
/// tokenised, the answer tokens chosen as the family's original code chooses them.
/// </summary>
public abstract class SampleEncoder(string manifestPath)
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
    public abstract EncodedSample Encode(PairRecord r, RgbImage image, string imageKey, RgbImage corruptImage, string corruptImageKey);

    /// <summary>Warns once per word that the answer splits and which piece stands for it.</summary>
    protected void WarnOnce(string word, int pieces, string used, string how)
    {
        if (pieces > 1 && _warned.Add(word))
            Warn?.Invoke($"answer '{word}' splits into {pieces} pieces; '{used}' is used ({how})");
    }

    protected static void CheckDistinct(PairRecord r, long correct, long incorrect)
    {
        if (correct == incorrect)
            throw new ArgumentException($"sample {r.Id}: answer '{r.Answer}' and wrong answer '{r.WrongAnswer}' are read from the same token");
    }
}

