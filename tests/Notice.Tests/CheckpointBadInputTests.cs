using Notice.Vlm.Blip;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>Bad checkpoints end in one clear error naming the file (and field or tensor).</summary>
public sealed class CheckpointBadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string CopyFixture()
    {
        foreach (var f in Directory.GetFiles(Fixtures.BlipTiny))
            File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
        return _dir;
    }

    [Fact]
    public void MissingWeightsNameTheFile()
    {
        var dir = CopyFixture();
        File.Delete(Path.Combine(dir, "model.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.Contains(Path.Combine(dir, "model.safetensors"), e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void TruncatedWeightsNameTheFileAndTensor()
    {
        var dir = CopyFixture();
        var path = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<CheckpointException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void GarbageWeightsAreNotASafetensorsFile()
    {
        var dir = CopyFixture();
        var path = Path.Combine(dir, "model.safetensors");
        File.WriteAllText(path, "this is not a safetensors file at all");
        var e = Assert.Throws<CheckpointException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void ConfigOfAnotherModelTypeNamesTheField()
    {
        var dir = CopyFixture();
        var config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_type\": \"blip\"", "\"model_type\": \"llava\""));
        var e = Assert.Throws<ConfigException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.Contains(config, e.Message);
        Assert.Contains("model_type", e.Message);
        Assert.Contains("llava", e.Message);
    }

    [Fact]
    public void ConfigFieldOfTheWrongTypeNamesTheField()
    {
        var dir = CopyFixture();
        var config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"patch_size\": 8", "\"patch_size\": \"eight\""));
        var e = Assert.Throws<ConfigException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.Contains(config, e.Message);
        Assert.Contains("vision_config.patch_size", e.Message);
    }

    [Fact]
    public void TensorOfTheWrongShapeIsListedWithBothShapes()
    {
        var dir = CopyFixture();
        var path = Path.Combine(dir, "model.safetensors");
        Dictionary<string, Tensor> tensors;
        using (var f = SafeTensorsFile.Open(path))
            tensors = f.Entries.Keys.ToDictionary(n => n, n => f.Read(n));
        tensors["text_encoder.encoder.layer.1.intermediate.dense.weight"] = torch.zeros(100, 64);
        tensors.Remove("vision_model.post_layernorm.bias");
        tensors["text_encoder.extra.weight"] = torch.zeros(3);
        SafeTensorsFile.Write(path, tensors);
        var e = Assert.Throws<CheckpointException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.Contains("mis-shaped (1): text_encoder.encoder.layer.1.intermediate.dense.weight: checkpoint [100, 64], model [128, 64]", e.Message);
        Assert.Contains("missing (1): vision_model.post_layernorm.bias", e.Message);
        Assert.Contains("unexpected (1): text_encoder.extra.weight", e.Message);
    }

    [Fact]
    public void QuestionLongerThanThePositionsIsRefused()
    {
        using var vqa = BlipVqa.Load(Fixtures.BlipTiny);
        var e = Assert.Throws<ArgumentException>(() => vqa.EncodeQuestion(string.Join(' ', Enumerable.Repeat("red", 600))));
        Assert.Contains("max_position_embeddings", e.Message);
        Assert.Contains("602 tokens", e.Message);
    }

    [Fact]
    public void ShardedIndexNamingAMissingShardNamesIt()
    {
        var dir = CopyFixture();
        File.Move(Path.Combine(dir, "model.safetensors"), Path.Combine(dir, "model-00001-of-00002.safetensors"));
        using (var f = SafeTensorsFile.Open(Path.Combine(dir, "model-00001-of-00002.safetensors")))
        {
            var map = f.Entries.Keys.ToDictionary(n => n, n => n.StartsWith("vision") ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors");
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), System.Text.Json.JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
        }
        var e = Assert.Throws<CheckpointException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.Contains("model.safetensors.index.json", e.Message);
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
    }
}

/// <summary>Round trips through the project's own writer, including sharded and half-precision files.</summary>
public sealed class CheckpointRoundTripTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-rt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void SavedModelLoadsWithTheSameNamesAndAnswers()
    {
        var model = BlipTinyModel.Shared;
        model.Save(_dir);
        foreach (var f in new[] { "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json" })
            File.Copy(Path.Combine(Fixtures.BlipTiny, f), Path.Combine(_dir, f));
        using var original = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "model.safetensors"));
        using var saved = SafeTensorsFile.Open(Path.Combine(_dir, "model.safetensors"));
        Assert.Equal(original.Entries.Keys.Order(), saved.Entries.Keys.Order());
        foreach (var (name, e) in original.Entries)
            Assert.Equal(e.Shape, saved.Entries[name].Shape);
        var reloaded = BlipForQuestionAnswering.Load(_dir);
        using var px = torch.randn(1, 3, 32, 32);
        using var ids = torch.tensor(new long[] { 2, 5, 6, 7, 3 }).unsqueeze(0);
        using var a = model.AnswerLogits(px, ids, null);
        using var b = reloaded.AnswerLogits(px, ids, null);
        Assert.Equal(0f, (a - b).abs().max().item<float>());
        // Every config field transformers reads is written explicitly.
        var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "config.json")))!;
        Assert.Equal("blip", cfg["model_type"]!.GetValue<string>());
        Assert.Equal(4, cfg["text_config"]!["num_attention_heads"]!.GetValue<int>());
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void HalfPrecisionTensorsReadIntoFloat32(ScalarType stored)
    {
        var path = Path.Combine(_dir, "half.safetensors");
        using var x = torch.linspace(-3, 3, 24).view(2, 3, 4);
        using var h = x.to(stored);
        SafeTensorsFile.Write(path, [new KeyValuePair<string, Tensor>("x", h)]);
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(stored == ScalarType.Float16 ? "F16" : "BF16", f.Entries["x"].DType);
        using var back = f.Read("x", ScalarType.Float32);
        using var expected = h.to(ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, back.dtype);
        Assert.Equal(0f, (back - expected).abs().max().item<float>());
    }
}
