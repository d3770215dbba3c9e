using Notice.Vlm.Checkpoints;
using Notice.Vlm.Config;
using Notice.Vlm.Llava;

namespace Notice.Tests;

/// <summary>LLaVA configs and sharded checkpoints: transformers' defaults where fields are left out,
/// one clear error naming the file (and field or shard) where something is wrong.</summary>
public sealed class LlavaBadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-llava-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Config => Path.Combine(_dir, "config.json");

    /// <summary>The config, index and shards of the fixture (what loading the model reads).</summary>
    private string CopyCheckpoint()
    {
        var files = Directory.GetFiles(Fixtures.LlavaTiny, "model-*.safetensors")
            .Append(Path.Combine(Fixtures.LlavaTiny, "model.safetensors.index.json"))
            .Append(Path.Combine(Fixtures.LlavaTiny, "config.json"));
        foreach (var f in files) File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
        return _dir;
    }

    private void EditConfig(string from, string to)
    {
        var text = File.ReadAllText(Config);
        Assert.Contains(from, text);
        File.WriteAllText(Config, text.Replace(from, to));
    }

    [Fact]
    public void OmittedFieldsTakeTransformersDefaults()
    {
        File.WriteAllText(Config, """{"model_type": "llava", "text_config": {"num_attention_heads": 8, "vocab_size": 32064}}""");
        var c = LlavaConfig.Load(Config);
        Assert.Equal(32000, c.ImageTokenIndex);
        Assert.Equal(-1, c.PadTokenId);
        Assert.Equal(-2, c.VisionFeatureLayer);
        Assert.Equal("default", c.VisionFeatureSelectStrategy);
        Assert.Equal("gelu", c.ProjectorHiddenAct);
        Assert.Equal(ClipVisionConfig.LlavaDefault, c.Vision);   // no vision_config: CLIP ViT-L/14-336
        Assert.Equal(576, c.NumImageFeatures);
        Assert.Equal(23, c.SelectedHiddenState);
        Assert.Equal("silu", c.Text.HiddenAct);
        Assert.Equal(10000.0, c.Text.RopeTheta);
        Assert.Equal(1e-6, c.Text.RmsNormEps);
        Assert.Equal(8, c.Text.NumKeyValueHeads);                // defaults to num_attention_heads
        Assert.Equal(4096, c.Text.HiddenSize);
        Assert.False(c.Text.AttentionBias);

        File.WriteAllText(Config, """{"model_type": "llava", "image_token_index": 5, "vision_config": {"hidden_size": 96}}""");
        var v = LlavaConfig.Load(Config).Vision;
        Assert.Equal("quick_gelu", v.HiddenAct);
        Assert.Equal(1e-5, v.LayerNormEps);
        Assert.Equal(3, v.NumChannels);
        Assert.Equal(32, v.PatchSize);   // CLIPVisionConfig's own defaults once a vision_config is given
    }

    [Fact]
    public void ConfigOfAnotherModelTypeNamesTheField()
    {
        CopyCheckpoint();
        EditConfig("\"model_type\": \"llava\"", "\"model_type\": \"blip\"");
        var e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(_dir));
        Assert.Contains(Config, e.Message);
        Assert.Equal("model_type", e.Field);
        Assert.Contains("blip", e.Message);
    }

    [Fact]
    public void ImageTokenOutsideTheVocabularyNamesTheField()
    {
        CopyCheckpoint();
        EditConfig("\"image_token_index\": 400", "\"image_token_index\": 416");
        var e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(_dir));
        Assert.Contains(Config, e.Message);
        Assert.Equal("image_token_index", e.Field);
        Assert.Contains("vocab_size 416", e.Message);
    }

    [Fact]
    public void IndexNamingAMissingShardNamesIt()
    {
        CopyCheckpoint();
        File.Delete(Path.Combine(_dir, "model-00002-of-00003.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => LlavaForConditionalGeneration.Load(_dir));
        Assert.Contains(Path.Combine(_dir, "model.safetensors.index.json"), e.Message);
        Assert.Contains("model-00002-of-00003.safetensors", e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void TruncatedShardNamesTheFile()
    {
        CopyCheckpoint();
        var shard = Path.Combine(_dir, "model-00003-of-00003.safetensors");
        var bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..(bytes.Length - 1000)]);
        var e = Assert.Throws<CheckpointException>(() => LlavaForConditionalGeneration.Load(_dir));
        Assert.Contains(shard, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void UnsupportedSettingsNameTheirField()
    {
        CopyCheckpoint();
        EditConfig("\"vision_feature_select_strategy\": \"default\"", "\"vision_feature_select_strategy\": \"cls\"");
        Assert.Equal("vision_feature_select_strategy", Assert.Throws<ConfigException>(() => LlavaConfig.Load(Config)).Field);
        EditConfig("\"vision_feature_select_strategy\": \"cls\"", "\"vision_feature_select_strategy\": \"default\"");
        EditConfig("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3");
        Assert.Equal("text_config.num_key_value_heads", Assert.Throws<ConfigException>(() => LlavaConfig.Load(Config)).Field);
        EditConfig("\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4");
        EditConfig("\"model_type\": \"llama\"", "\"model_type\": \"mistral\"");
        Assert.Equal("text_config.model_type", Assert.Throws<ConfigException>(() => LlavaConfig.Load(Config)).Field);
    }
}
