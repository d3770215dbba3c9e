using Notice.Vlm.Config;
using Notice.Vlm.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>A tokenised, processed batch ready for the model, as Qwen2_5_VLProcessor returns it.</summary>
/// <param name="InputIds">[B, T] int64 with every &lt;|image_pad|&gt; expanded to its image's token count, left-padded</param>
/// <param name="AttentionMask">[B, T] int64, 0 at padding</param>
/// <param name="PixelValues">[N, C*T*P*P] float32, every image's patches in order</param>
/// <param name="GridThw">[images, 3] int64</param>
public sealed record QwenBatch(Tensor InputIds, Tensor AttentionMask, Tensor PixelValues, Tensor GridThw) : IDisposable
{
    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask.Dispose();
        PixelValues.Dispose();
        GridThw.Dispose();
    }
}

/// <summary>
/// A Qwen2.5-VL checkpoint folder ready to use: the model, its tokenizer and its image processor,
/// as Qwen2_5_VLProcessor + Qwen2_5_VLForConditionalGeneration are used in transformers. Every
/// question goes into the chat template (<see cref="QwenPrompt.Format"/>) with one image.
/// </summary>
public sealed class Qwen25VlVqa : IVisionLanguageModel
{
    public string Folder { get; }
    public Qwen25VlForConditionalGeneration Model { get; }
    public QwenTokenizer Tokenizer { get; }
    public QwenImageProcessor ImageProcessor { get; }

    private Qwen25VlVqa(string folder, Qwen25VlForConditionalGeneration model, QwenTokenizer tokenizer, QwenImageProcessor processor)
    {
        Folder = folder; Model = model; Tokenizer = tokenizer; ImageProcessor = processor;
    }

    /// <summary>
    /// Loads the folder; the weights (bf16, f16 or f32 on disk, sharded or not) are streamed into
    /// <paramref name="dtype"/> on <paramref name="device"/> one tensor at a time.
    /// </summary>
    public static Qwen25VlVqa Load(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: model folder not found");
        var tokenizer = QwenTokenizer.Load(folder);
        var processor = QwenImageProcessor.FromFile(Path.Combine(folder, "preprocessor_config.json"));
        var configPath = Path.Combine(folder, "config.json");
        var config = QwenConfig.Load(configPath);
        CheckAgreement(config, tokenizer, processor, configPath);
        var model = Qwen25VlForConditionalGeneration.Load(folder, dtype, device);
        return new Qwen25VlVqa(folder, model, tokenizer, processor);
    }

    /// <summary>The tokenizer, the image processor and config.json must describe the same model.</summary>
    private static void CheckAgreement(QwenConfig config, QwenTokenizer tokenizer, QwenImageProcessor processor, string configPath)
    {
        if (tokenizer.VocabSize > config.VocabSize)
            throw new ConfigException(configPath, "vocab_size", $"is {config.VocabSize}, but the tokenizer has {tokenizer.VocabSize} tokens");
        foreach (var (field, value, token, id) in new[]
        {
            ("image_token_id", config.ImageTokenId, QwenTokenizer.ImagePad, tokenizer.ImageTokenId),
            ("vision_start_token_id", config.VisionStartTokenId, QwenTokenizer.VisionStart, tokenizer.VisionStartId),
            ("vision_end_token_id", config.VisionEndTokenId, QwenTokenizer.VisionEnd, tokenizer.VisionEndId),
        })
            if (value != id) throw new ConfigException(configPath, field, $"is {value}, but the tokenizer's {token} is {id}");
        var v = config.Vision;
        if (processor.PatchSize != v.PatchSize || processor.MergeSize != v.SpatialMergeSize || processor.TemporalPatchSize != v.TemporalPatchSize)
            throw new ConfigException(configPath, "vision_config.patch_size",
                $"patch {v.PatchSize}, merge {v.SpatialMergeSize}, temporal {v.TemporalPatchSize} differ from preprocessor_config.json's {processor.PatchSize}, {processor.MergeSize}, {processor.TemporalPatchSize}");
    }

    /// <summary>
    /// input_ids of one whole prompt, which must hold exactly one &lt;|image_pad|&gt;; it is expanded
    /// to <paramref name="imageTokens"/> copies (grid_t * grid_h * grid_w / merge^2 of its image).
    /// </summary>
    public int[] EncodePrompt(string prompt, int imageTokens)
    {
        var ids = Tokenizer.Encode(prompt);
        int images = ids.Count(i => i == Tokenizer.ImageTokenId);
        if (images != 1)
            throw new ArgumentException($"the prompt holds {images} {QwenTokenizer.ImagePad} placeholders; one image per prompt takes exactly one: \"{prompt.ReplaceLineEndings("\\n")}\"");
        var expanded = new List<int>(ids.Length + imageTokens);
        foreach (int id in ids)
        {
            if (id == Tokenizer.ImageTokenId) expanded.AddRange(Enumerable.Repeat(id, imageTokens));
            else expanded.Add(id);
        }
        return expanded.ToArray();
    }

    /// <summary>
    /// The processor's output for (image file, whole prompt) pairs: images preprocessed, prompts
    /// tokenised with their &lt;|image_pad|&gt; expanded, rows left-padded with the pad token.
    /// </summary>
    public QwenBatch Process(IReadOnlyList<(string ImagePath, string Prompt)> items)
    {
        if (items.Count == 0) throw new ArgumentException("no prompts to process", nameof(items));
        using var scope = torch.NewDisposeScope();
        var pixels = ImageProcessor.Preprocess(items.Select(i => i.ImagePath).ToList());
        var grids = QwenVisionLayout.Grids(pixels.GridThw);
        var rows = items.Select((item, i) => EncodePrompt(item.Prompt, ImageProcessor.ImageTokens(grids[i].T, grids[i].H, grids[i].W))).ToList();
        var (ids, mask) = Tokenizer.PadBatch(rows);
        var batch = new QwenBatch(torch.tensor(ids), torch.tensor(mask), pixels.PixelValues, pixels.GridThw);
        batch.InputIds.MoveToOuterDisposeScope();
        batch.AttentionMask.MoveToOuterDisposeScope();
        batch.PixelValues.MoveToOuterDisposeScope();
        batch.GridThw.MoveToOuterDisposeScope();
        return batch;
    }

    /// <summary>Answers <paramref name="question"/> about one image greedily; Logits are the prompt's last position's, every vocabulary row.</summary>
    public VlmAnswer Answer(string imagePath, string question, int maxNewTokens = 10)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var batch = Process(new[] { (imagePath, QwenPrompt.Format(question)) });
        using var generation = Model.Generate(batch.PixelValues, batch.GridThw, batch.InputIds, batch.AttentionMask, maxNewTokens);
        var generated = generation.NewIds[0];
        var text = Tokenizer.Decode(generated.Select(i => (int)i));
        var lastLogits = generation.StepLogits[0][0].cpu().data<float>().ToArray();
        return new VlmAnswer(text, generated, lastLogits);
    }

    /// <summary>Answers many (image, question) pairs greedily, in left-padded batches as Qwen2_5_VLProcessor(padding=True) pads them.</summary>
    public IReadOnlyList<string> AnswerBatch(IReadOnlyList<(string Image, string Question)> items, int batchSize = 16, int maxNewTokens = 10)
    {
        var answers = new List<string>(items.Count);
        foreach (var chunk in items.Chunk(Math.Max(1, batchSize)))
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            using var batch = Process(chunk.Select(c => (c.Image, QwenPrompt.Format(c.Question))).ToList());
            using var generation = Model.Generate(batch.PixelValues, batch.GridThw, batch.InputIds, batch.AttentionMask, maxNewTokens);
            answers.AddRange(generation.NewIds.Select(g => Tokenizer.Decode(g.Select(i => (int)i))));
        }
        return answers;
    }

    VlmAnswer IVisionLanguageModel.Answer(string imagePath, string question) => Answer(imagePath, question);

    IReadOnlyList<string> IVisionLanguageModel.AnswerBatch(IReadOnlyList<(string Image, string Question)> items, int batchSize) => AnswerBatch(items, batchSize);

    public void Dispose() => Model.Dispose();
}
