using Notice.Vlm.Config;
using Notice.Vlm.Processing;
using Notice.Vlm.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>LLaVA's answer to one question about one image.</summary>
/// <param name="Text">the decoded new tokens (special tokens skipped)</param>
/// <param name="Ids">the generated ids, end-of-sequence last where generation stopped on it</param>
/// <param name="LastLogits">the logits at the prompt's last position over every vocabulary row</param>
public sealed record LlavaAnswer(string Text, long[] Ids, float[] LastLogits);

/// <summary>
/// A LLaVA-1.5 checkpoint folder ready to use: the model, its tokenizer and its image processor, as
/// LlavaProcessor + LlavaForConditionalGeneration are used in transformers.
/// </summary>
public sealed class LlavaVqa : IVisionLanguageModel
{
    public string Folder { get; }
    public LlavaForConditionalGeneration Model { get; }
    public LlamaTokenizer Tokenizer { get; }
    public ClipImageProcessor ImageProcessor { get; }

    private LlavaVqa(string folder, LlavaForConditionalGeneration model, LlamaTokenizer tokenizer, ClipImageProcessor processor)
    {
        Folder = folder; Model = model; Tokenizer = tokenizer; ImageProcessor = processor;
    }

    public static LlavaVqa Load(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: model folder not found");
        var tokenizer = LlamaTokenizer.Load(folder);
        var processor = ClipImageProcessor.FromFile(Path.Combine(folder, "preprocessor_config.json"));
        var config = Path.Combine(folder, "config.json");
        var model = LlavaForConditionalGeneration.Load(folder, dtype, device);
        if (tokenizer.VocabSize > model.Config.Text.VocabSize)
        {
            model.Dispose();
            throw new ConfigException(config, "text_config.vocab_size", $"is {model.Config.Text.VocabSize}, but the tokenizer has {tokenizer.VocabSize} tokens");
        }
        if (tokenizer.ImageTokenId != model.Config.ImageTokenIndex)
        {
            model.Dispose();
            throw new ConfigException(config, "image_token_index", $"is {model.Config.ImageTokenIndex}, but the tokenizer's {LlavaPrompt.ImageToken} is {tokenizer.ImageTokenId}");
        }
        return new LlavaVqa(folder, model, tokenizer, processor);
    }

    /// <summary>input_ids [1, T] of a whole prompt, which must hold exactly one &lt;image&gt;.</summary>
    public Tensor EncodePrompt(string prompt)
    {
        var ids = Tokenizer.Encode(prompt);
        int images = ids.Count(i => i == Tokenizer.ImageTokenId);
        if (images != 1)
            throw new ArgumentException($"the prompt holds {images} {LlavaPrompt.ImageToken} tokens; LLaVA-1.5 takes exactly one: \"{prompt}\"");
        return torch.tensor(ids.Select(i => (long)i).ToArray(), dtype: ScalarType.Int64).unsqueeze(0);
    }

    /// <summary>pixel_values [1, 3, H, W] of an image file.</summary>
    public Tensor Pixels(string imagePath) => ImageProcessor.Preprocess(ImageDecoder.Load(imagePath)).unsqueeze(0);

    /// <summary>Answers <paramref name="question"/>, put in the llava-1.5 template (<see cref="LlavaPrompt.Format"/>), greedily.</summary>
    public LlavaAnswer Answer(string imagePath, string question, int maxNewTokens = 10)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var ids = EncodePrompt(LlavaPrompt.Format(question));
        using var generation = Model.Generate(Pixels(imagePath), ids, null, maxNewTokens);
        var generated = generation.NewIds[0];
        var text = Tokenizer.Decode(generated.Select(i => (int)i));
        var lastLogits = generation.StepLogits[0][0].cpu().data<float>().ToArray();
        return new LlavaAnswer(text, generated, lastLogits);
    }

    VlmAnswer IVisionLanguageModel.Answer(string imagePath, string question)
    {
        var a = Answer(imagePath, question);
        return new VlmAnswer(a.Text, a.Ids, a.LastLogits);
    }

    /// <summary>
    /// Answers many (image, question) pairs greedily, each question in the llava-1.5 template, in
    /// batches left-padded as LlavaProcessor(padding=True) pads them.
    /// </summary>
    public IReadOnlyList<string> AnswerBatch(IReadOnlyList<(string Image, string Question)> items, int batchSize = 16)
    {
        var answers = new List<string>(items.Count);
        foreach (var chunk in items.Chunk(Math.Max(1, batchSize)))
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var pixels = ImageProcessor.Preprocess(chunk.Select(c => ImageDecoder.Load(c.Image)).ToList());
            var prompts = chunk.Select(c => LlavaPrompt.Format(c.Question)).ToList();
            foreach (var p in prompts) EncodePrompt(p).Dispose();   // one clear error for a prompt without exactly one <image>
            var (ids, mask) = Tokenizer.EncodeBatch(prompts);
            using var generation = Model.Generate(pixels, torch.tensor(ids), torch.tensor(mask), maxNewTokens: 10);
            answers.AddRange(generation.NewIds.Select(g => Tokenizer.Decode(g.Select(i => (int)i))));
        }
        return answers;
    }

    public void Dispose() => Model.Dispose();
}
