using System.Text.Json.Nodes;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Config;
using Notice.Vlm.Processing;
using Notice.Vlm.Qwen25Vl;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>Qwen2.5-VL inputs that cannot be used give one-line errors that name the file and field, or the problem.</summary>
public sealed class Qwen25VlBadInputTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "notice-qwen-bad-" + Guid.NewGuid().ToString("N"));

    public Qwen25VlBadInputTests()
    {
        Directory.CreateDirectory(_dir);
        foreach (var file in Directory.GetFiles(QwenTinyModel.Folder))
        {
            var name = Path.GetFileName(file);
            if (name.StartsWith("reference.") || name.StartsWith("notice_patching.")) continue;
            File.Copy(file, Path.Combine(_dir, name));
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private void EditJson(string file, Action<JsonObject> edit)
    {
        var path = Path.Combine(_dir, file);
        var node = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(node);
        File.WriteAllText(path, node.ToJsonString());
    }

    private static void OneLine(Exception e) => Assert.DoesNotContain('\n', e.Message);

    [Fact]
    public void MropeSectionThatDoesNotCoverTheHeadIsAnError()
    {
        EditJson("config.json", c => c["rope_scaling"]!["mrope_section"] = new JsonArray(2, 3, 4));
        var e = Assert.Throws<ConfigException>(() => QwenConfig.Load(Path.Combine(_dir, "config.json")));
        OneLine(e);
        Assert.Equal("rope_scaling.mrope_section", e.Field);
        Assert.Contains("config.json", e.Message);
        Assert.Contains("head_dim 16", e.Message);
    }

    [Theory]
    [InlineData("model_type", "model_type")]
    [InlineData("rope_scaling", "rope_scaling")]
    [InlineData("num_heads", "vision_config.num_heads")]
    [InlineData("out_hidden_size", "vision_config.out_hidden_size")]
    [InlineData("image_token_id", "image_token_id")]
    public void BadConfigFieldsAreNamed(string edit, string field)
    {
        EditJson("config.json", c =>
        {
            switch (edit)
            {
                case "model_type": c["model_type"] = "llava"; break;
                case "rope_scaling": c.Remove("rope_scaling"); break;
                case "num_heads": c["vision_config"]!["num_heads"] = "three"; break;
                case "out_hidden_size": c["vision_config"]!["out_hidden_size"] = 32; break;
                case "image_token_id": c["image_token_id"] = 9999; break;
            }
        });
        var e = Assert.Throws<ConfigException>(() => Qwen25VlVqa.Load(_dir));
        OneLine(e);
        Assert.Equal(field, e.Field);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void UntiedHeadWithoutLmHeadWeightIsAnError()
    {
        EditJson("config.json", c => c["tie_word_embeddings"] = false);
        var e = Assert.Throws<CheckpointException>(() => Qwen25VlForConditionalGeneration.Load(_dir));
        Assert.Contains("missing (1): lm_head.weight", e.Message);
    }

    [Fact]
    public void AnUntiedHeadIsReadFromLmHeadWeight()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var tied = Qwen25VlForConditionalGeneration.Load(QwenTinyModel.Folder);
        // The same weights saved untied, with the head a copy of the embeddings (scaled, so it differs).
        var tensors = tied.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value);
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"] * 2;
        foreach (var f in Directory.GetFiles(_dir, "model*.safetensors*")) File.Delete(f);
        SafeTensorsFile.Write(Path.Combine(_dir, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        EditJson("config.json", c => c["tie_word_embeddings"] = false);
        using var untied = Qwen25VlForConditionalGeneration.Load(_dir);
        var hidden = torch.randn(2, 64);
        Assert.Equal(0.0, (untied.Logits(hidden) - 2 * tied.Logits(hidden)).abs().max().item<float>(), 5);
    }

    /// <summary>A checkpoint saved by transformers 4.52+ (model.visual.*, model.language_model.*, text_config) loads as well.</summary>
    [Fact]
    public void LoadsTheNamesAndTextConfigOfNewerTransformers()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var old = Qwen25VlForConditionalGeneration.Load(QwenTinyModel.Folder);
        var renamed = old.StateTensors().ToDictionary(
            kv => kv.Key.StartsWith("visual.") ? "model." + kv.Key : "model.language_model." + kv.Key["model.".Length..], kv => kv.Value);
        foreach (var f in Directory.GetFiles(_dir, "model*.safetensors*")) File.Delete(f);
        SafeTensorsFile.Write(Path.Combine(_dir, "model.safetensors"), renamed, new Dictionary<string, string> { ["format"] = "pt" });
        EditJson("config.json", c =>
        {
            var text = new JsonObject();
            foreach (var field in new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "rope_theta", "rope_scaling", "vocab_size" })
            {
                text[field] = c[field]!.DeepClone();
                c.Remove(field);
            }
            c["text_config"] = text;
        });
        using var loaded = Qwen25VlForConditionalGeneration.Load(_dir);
        Assert.Equal(old.Config.MropeSection, loaded.Config.MropeSection);
        Assert.Equal(old.Config.NumKeyValueHeads, loaded.Config.NumKeyValueHeads);
        foreach (var (name, p) in old.StateTensors())
            Assert.Equal(0f, (p - loaded.StateTensors()[name]).abs().max().item<float>());
    }

    [Fact]
    public void ImagesTooSmallOrTooElongatedAreErrors()
    {
        var processor = QwenImageProcessor.FromFile(Path.Combine(_dir, "preprocessor_config.json"));
        var small = Assert.Throws<ImageException>(() => processor.Preprocess(new[] { RgbImage.Blank(20, 40) }, new[] { "tiny.png" }));
        OneLine(small);
        Assert.StartsWith("tiny.png: ", small.Message);
        Assert.Contains("too small", small.Message);
        var thin = Assert.Throws<ImageException>(() => processor.Preprocess(new[] { RgbImage.Blank(6000, 28) }, new[] { "thin.png" }));
        OneLine(thin);
        Assert.Contains("aspect ratio", thin.Message);
    }

    [Fact]
    public void SmartResizeBranches()
    {
        var p = QwenImageProcessor.FromFile(Path.Combine(_dir, "preprocessor_config.json"));
        Assert.Equal((84, 112), p.SmartResize(76, 100));    // round
        Assert.Equal((56, 56), p.SmartResize(60, 70));      // 70/28 = 2.5 rounds to 2
        Assert.Equal((56, 112), p.SmartResize(50, 98));     // 98/28 = 3.5 rounds to 4
        Assert.Equal((168, 56), p.SmartResize(220, 90));    // above max_pixels: floor
        Assert.Equal((56, 84), p.SmartResize(30, 40));      // below min_pixels: ceil
    }

    [Fact]
    public void MissingImageFileIsNamed()
    {
        var processor = QwenImageProcessor.FromFile(Path.Combine(_dir, "preprocessor_config.json"));
        var missing = Path.Combine(_dir, "nope.png");
        var e = Assert.Throws<ImageException>(() => processor.Preprocess(new[] { missing }));
        Assert.StartsWith(missing, e.Message);
    }

    [Theory]
    [InlineData("What is this?", 0)]
    [InlineData("<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>Two?", 2)]
    public void PromptsWithoutExactlyOneImagePlaceholderAreErrors(string prompt, int found)
    {
        var vqa = QwenTinyModel.Vqa;
        var e = Assert.Throws<ArgumentException>(() => vqa.EncodePrompt(prompt, 12));
        OneLine(e);
        Assert.Contains($"holds {found} <|image_pad|>", e.Message);
    }

    [Fact]
    public void ImageTokenCountMustMatchTheFeatures()
    {
        using var scope = torch.NewDisposeScope();
        var model = QwenTinyModel.Vqa.Model;
        var ids = torch.tensor(new long[] { 411, 415, 419, 419, 416, 412 }).view(1, -1);
        var e = Assert.Throws<ArgumentException>(() => model.MergeInputs(ids, null, torch.zeros(4, 64), torch.tensor(new long[] { 1, 4, 4 }).view(1, 3)));
        OneLine(e);
        Assert.Contains("2 <|image_pad|> tokens", e.Message);
    }

    [Fact]
    public void TokenizerWithoutTheImagePadTokenIsAnErrorNamingTheFile()
    {
        EditJson("added_tokens.json", a => a.Remove("<|image_pad|>"));
        EditJson("tokenizer_config.json", c => c["added_tokens_decoder"]!.AsObject().Remove("419"));
        var e = Assert.Throws<CheckpointException>(() => QwenTokenizer.Load(_dir));
        OneLine(e);
        Assert.Contains("tokenizer_config.json", e.Message);
        Assert.Contains("<|image_pad|>", e.Message);
    }

    [Theory]
    [InlineData("vocab.json")]
    [InlineData("merges.txt")]
    [InlineData("tokenizer_config.json")]
    public void MissingTokenizerFilesAreNamed(string file)
    {
        File.Delete(Path.Combine(_dir, file));
        var e = Assert.Throws<CheckpointException>(() => QwenTokenizer.Load(_dir));
        OneLine(e);
        Assert.Contains(file, e.Message);
    }

    [Fact]
    public void BadMergesLineIsNamed()
    {
        File.AppendAllText(Path.Combine(_dir, "merges.txt"), "a b c\n");
        var e = Assert.Throws<CheckpointException>(() => QwenTokenizer.Load(_dir));
        OneLine(e);
        Assert.Contains("merges.txt", e.Message);
    }
}
