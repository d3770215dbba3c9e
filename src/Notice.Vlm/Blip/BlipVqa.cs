using Notice.Vlm.Config;
using Notice.Vlm.Processing;
using Notice.Vlm.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Blip;

/// <summary>The answer to one question about one image.</summary>
/// <param name="Text">the decoded answer</param>
/// <param name="Ids">generated ids, [DEC] first, [SEP] last where generation stopped on it</param>
/// <param name="FirstStepLogits">the decoder's first-step logits over the whole vocabulary</param>
public sealed record VqaAnswer(string Text, long[] Ids, float[] FirstStepLogits);

/// <summary>
/// A BLIP-VQA checkpoint folder ready to use: the model, its tokenizer and its image processor,
/// as BlipProcessor + BlipForQuestionAnswering are used in transformers.
/// </summary>
public sealed class BlipVqa : IVisionLanguageModel
{
    public string Folder { get; }
    public BlipForQuestionAnswering Model { get; }
    public BlipTokenizer Tokenizer { get; }
    public BlipImageProcessor ImageProcessor { get; }

    private BlipVqa(string folder, BlipForQuestionAnswering model, BlipTokenizer tokenizer, BlipImageProcessor processor)
    {
        Folder = folder; Model = model; Tokenizer = tokenizer; ImageProcessor = processor;
    }

    public static BlipVqa Load(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: model folder not found");
        var tokenizer = BlipTokenizer.Load(folder);
        var processor = BlipImageProcessor.FromFile(Path.Combine(folder, "preprocessor_config.json"));
        var model = BlipForQuestionAnswering.Load(folder, dtype, device);
        if (tokenizer.VocabSize > model.Config.Text.VocabSize)
            throw new ConfigException(Path.Combine(folder, "vocab.txt"), "", $"has {tokenizer.VocabSize} tokens but text_config.vocab_size is {model.Config.Text.VocabSize}");
        return new BlipVqa(folder, model, tokenizer, processor);
    }

    /// <summary>Question ids [1, T] with [CLS] and [SEP]; a question longer than the model's
    /// positions is an error naming the limit.</summary>
    public Tensor EncodeQuestion(string question)
    {
        var ids = Tokenizer.Encode(question);
        CheckLength(ids.Length);
        return torch.tensor(ids.Select(i => (long)i).ToArray(), dtype: ScalarType.Int64).unsqueeze(0);
    }

    public void CheckLength(int tokens)
    {
        int max = Model.Config.Text.MaxPositionEmbeddings;
        if (tokens > max)
            throw new ArgumentException($"the question has {tokens} tokens, more than the model's {max} positions (text_config.max_position_embeddings in {Path.Combine(Folder, "config.json")})");
    }

    /// <summary>pixel_values [1, 3, H, W] of an image file.</summary>
    public Tensor Pixels(string imagePath) => Pixels(ImageDecoder.Load(imagePath));

    /// <summary>pixel_values [1, 3, H, W] of a decoded image.</summary>
    public Tensor Pixels(RgbImage image) => ImageProcessor.Preprocess(image).unsqueeze(0);

    public VqaAnswer Answer(string imagePath, string question)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var pixels = Pixels(imagePath);
        var ids = EncodeQuestion(question);
        var logits = Model.AnswerLogits(pixels, ids, torch.ones_like(ids));
        var generated = Model.Generate(pixels, ids, torch.ones_like(ids))[0];
        var text = Tokenizer.Decode(generated.Select(i => (int)i));
        return new VqaAnswer(text, generated, logits[0].to(ScalarType.Float32).cpu().data<float>().ToArray());
    }

    VlmAnswer IVisionLanguageModel.Answer(string imagePath, string question)
    {
        var a = Answer(imagePath, question);
        return new VlmAnswer(a.Text, a.Ids, a.FirstStepLogits);
    }

    /// <summary>Answers many (image, question) pairs in padded batches, as BlipProcessor with padding=True.</summary>
    public IReadOnlyList<string> AnswerBatch(IReadOnlyList<(string Image, string Question)> items, int batchSize = 16)
    {
        var answers = new List<string>(items.Count);
        foreach (var chunk in items.Chunk(batchSize))
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var pixels = ImageProcessor.Preprocess(chunk.Select(c => ImageDecoder.Load(c.Image)).ToList());
            var (ids, mask) = Tokenizer.EncodeBatch(chunk.Select(c => c.Question).ToList());
            CheckLength(ids.GetLength(1));
            var generated = Model.Generate(pixels, torch.tensor(ids), torch.tensor(mask));
            answers.AddRange(generated.Select(g => Tokenizer.Decode(g.Select(i => (int)i))));
        }
        return answers;
    }

    public void Dispose() => Model.Dispose();
}
