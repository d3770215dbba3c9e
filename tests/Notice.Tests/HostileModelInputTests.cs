using System.Diagnostics;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Notice.Cli;
using Notice.Vlm.Blip;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Config;
using Notice.Vlm.Llava;
using Notice.Vlm.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>
/// Hostile model folders and images: absurd config sizes, malformed safetensors headers and shard
/// indexes, Hugging Face cache folders of links, decompression bombs and files that are not files.
/// Each ends in one line naming the file (and field or tensor) that the CLI reports as an input
/// error; none crashes, hangs or allocates what the input asks for.
/// </summary>
public sealed class HostileModelInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-hostile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>One line, naming what it must, of a type the CLI reports as an input error.</summary>
    private static void AssertOneLineInputError(Exception e, params string[] mentions)
    {
        Assert.True(CliErrors.IsInputError(e), $"{e.GetType().Name} is not reported as an input error: {e.Message}");
        Assert.DoesNotContain('\n', e.Message);
        foreach (var m in mentions) Assert.Contains(m, e.Message);
    }

    private string CopyFixture(string fixture, string name)
    {
        var dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(fixture)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    private static void EditConfig(string dir, Action<JsonObject> edit)
    {
        var path = Path.Combine(dir, "config.json");
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(o);
        File.WriteAllText(path, o.ToJsonString());
    }

    private static void Set(JsonObject o, string dotted, JsonNode? value)
    {
        var parts = dotted.Split('.');
        var at = o;
        foreach (var p in parts[..^1]) at = at[p]!.AsObject();
        at[parts[^1]] = value;
    }

    // ---------------------------------------------------------------- 1. config.json sizes

    public static TheoryData<string, long, string> BlipBadSizes => new()
    {
        { "vision_config.num_attention_heads", 0, "positive" },
        { "vision_config.patch_size", 0, "positive" },
        { "text_config.num_attention_heads", 0, "positive" },
        { "text_config.intermediate_size", -3072, "positive" },
        { "vision_config.num_hidden_layers", -1, "positive" },
        { "text_config.vocab_size", 0, "positive" },
        { "vision_config.hidden_size", 65536, "between 1 and 32768" },
        { "text_config.num_hidden_layers", 513, "between 1 and 512" },
        { "vision_config.num_attention_heads", 2048, "between 1 and 1024" },
        { "text_config.vocab_size", 2_000_000, "between 1 and 1048576" },
        { "vision_config.image_size", 1_000_000, "between 1 and 8192" },
        { "text_config.max_position_embeddings", 10_000_000_000, "out of range" },
        { "text_config.sep_token_id", 107, "outside the vocabulary" },
        { "text_config.bos_token_id", -1, "outside the vocabulary" },
    };

    [Theory]
    [MemberData(nameof(BlipBadSizes))]
    public void BlipSizeFieldsMustBePositiveAndCapped(string field, long value, string says)
    {
        var dir = CopyFixture(Fixtures.BlipTiny, "blip");
        EditConfig(dir, o => Set(o, field, value));
        var e = Assert.Throws<ConfigException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.Equal(field, e.Field);
        AssertOneLineInputError(e, Path.Combine(dir, "config.json"), field, says);
    }

    public static TheoryData<string, double, string> LlavaBadSizes => new()
    {
        { "text_config.num_key_value_heads", 0, "positive" },
        { "text_config.num_attention_heads", 0, "positive" },
        { "vision_config.patch_size", 0, "positive" },
        { "text_config.intermediate_size", -1, "positive" },
        { "text_config.hidden_size", 65536, "between 1 and 32768" },
        { "text_config.max_position_embeddings", 1e30, "out of range" },
        { "vision_config.num_channels", 4, "must be 3" },
        { "text_config.num_key_value_heads", 8, "cannot be shared evenly" },   // more key/value heads than heads
        { "text_config.rope_theta", -1, "positive" },
        { "text_config.eos_token_id", 416, "outside the language model's vocabulary" },
        { "text_config.bos_token_id", -1, "outside the language model's vocabulary" },
    };

    [Theory]
    [MemberData(nameof(LlavaBadSizes))]
    public void LlavaSizeFieldsMustBePositiveAndCapped(string field, double value, string says)
    {
        var dir = CopyFixture(Fixtures.LlavaTiny, "llava");
        EditConfig(dir, o => Set(o, field, value));
        var e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(dir));
        Assert.Equal(field, e.Field);
        AssertOneLineInputError(e, Path.Combine(dir, "config.json"), field, says);
    }

    [Fact]
    public void PatchGridArithmeticCannotOverflow()
    {
        var dir = CopyFixture(Fixtures.BlipTiny, "blip");
        // 8192 / 1 = 8192 per side: 67,108,864 patches (over the cap; computed in 64 bits).
        EditConfig(dir, o => { Set(o, "vision_config.image_size", 8192); Set(o, "vision_config.patch_size", 1); });
        var e = Assert.Throws<ConfigException>(() => BlipConfig.Load(Path.Combine(dir, "config.json")));
        AssertOneLineInputError(e, "vision_config.image_size", "67108864 patches");
        // A patch larger than the image.
        EditConfig(dir, o => { Set(o, "vision_config.image_size", 32); Set(o, "vision_config.patch_size", 64); });
        e = Assert.Throws<ConfigException>(() => BlipConfig.Load(Path.Combine(dir, "config.json")));
        Assert.Equal("vision_config.patch_size", e.Field);
    }

    [Fact]
    public void DivisibilityIsChecked()
    {
        var blip = CopyFixture(Fixtures.BlipTiny, "blip");
        var config = Path.Combine(blip, "config.json");
        EditConfig(blip, o => Set(o, "text_config.num_attention_heads", 5));
        AssertOneLineInputError(Assert.Throws<ConfigException>(() => BlipConfig.Load(config)), "text_config.num_attention_heads", "not a multiple");
        EditConfig(blip, o => { Set(o, "text_config.num_attention_heads", 4); Set(o, "vision_config.patch_size", 7); });
        AssertOneLineInputError(Assert.Throws<ConfigException>(() => BlipConfig.Load(config)), "vision_config.patch_size", "not a multiple");

        var llava = CopyFixture(Fixtures.LlavaTiny, "llava");
        config = Path.Combine(llava, "config.json");
        EditConfig(llava, o => Set(o, "text_config.num_key_value_heads", 3));
        AssertOneLineInputError(Assert.Throws<ConfigException>(() => LlavaConfig.Load(config)), "text_config.num_key_value_heads");
        EditConfig(llava, o => { Set(o, "text_config.num_key_value_heads", 4); Set(o, "vision_config.num_attention_heads", 3); });
        AssertOneLineInputError(Assert.Throws<ConfigException>(() => LlavaConfig.Load(config)), "vision_config.num_attention_heads");
    }

    [Fact]
    public void HugeWidthWithinTheCapIsComparedWithTheWeightsBeforeAnythingIsAllocated()
    {
        // 32768-wide BLIP: 12 layers of it would be ~50 GiB. The checkpoint is 64 wide, so the config
        // is refused from the safetensors header alone.
        var dir = CopyFixture(Fixtures.BlipTiny, "blip");
        EditConfig(dir, o => { Set(o, "vision_config.hidden_size", 32768); Set(o, "text_config.hidden_size", 32768); });
        long before = Process.GetCurrentProcess().PrivateMemorySize64;
        var watch = Stopwatch.StartNew();
        var e = Assert.Throws<ConfigException>(() => BlipForQuestionAnswering.Load(dir));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
        Assert.True(Process.GetCurrentProcess().PrivateMemorySize64 - before < 1L << 30, "allocated over 1 GiB");
        Assert.Equal("vision_config.hidden_size", e.Field);
        AssertOneLineInputError(e, Path.Combine(dir, "config.json"), "vision_model.embeddings.patch_embedding.weight", "[64, 3, 8, 8]", "[32768, 3, 8, 8]");

        var llava = CopyFixture(Fixtures.LlavaTiny, "llava");
        EditConfig(llava, o => Set(o, "text_config.hidden_size", 32768));
        e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(llava));
        Assert.Equal("text_config.hidden_size", e.Field);
        AssertOneLineInputError(e, Path.Combine(llava, "config.json"), "multi_modal_projector.linear_1.weight");
    }

    [Fact]
    public void OtherSizesAreComparedWithTheWeights()
    {
        var llava = CopyFixture(Fixtures.LlavaTiny, "llava");
        var config = Path.Combine(llava, "config.json");
        EditConfig(llava, o => Set(o, "text_config.num_hidden_layers", 512));
        var e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(llava));
        Assert.Equal("text_config.num_hidden_layers", e.Field);
        AssertOneLineInputError(e, config, "is 512", "hold 3 such layers", "language_model.model.layers.511.mlp.gate_proj.weight");

        EditConfig(llava, o => { Set(o, "text_config.num_hidden_layers", 3); Set(o, "text_config.vocab_size", 1_000_000); });
        e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(llava));
        Assert.Equal("text_config.vocab_size", e.Field);
        AssertOneLineInputError(e, config, "language_model.model.embed_tokens.weight", "[416, 64]", "[1000000, 64]");

        // Grouped-query attention: 2 key/value heads imply a [32, 64] k_proj; the checkpoint's is [64, 64].
        EditConfig(llava, o => { Set(o, "text_config.vocab_size", 416); Set(o, "text_config.num_key_value_heads", 2); });
        e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(llava));
        Assert.Equal("text_config.num_key_value_heads", e.Field);

        EditConfig(llava, o => { Set(o, "text_config.num_key_value_heads", 4); Set(o, "vision_config.image_size", 64); });
        e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(llava));
        Assert.Equal("vision_config.image_size", e.Field);

        var blip = CopyFixture(Fixtures.BlipTiny, "blip");
        EditConfig(blip, o => Set(o, "text_config.intermediate_size", 262144));
        e = Assert.Throws<ConfigException>(() => BlipForQuestionAnswering.Load(blip));
        Assert.Equal("text_config.intermediate_size", e.Field);
        AssertOneLineInputError(e, "text_encoder.encoder.layer.0.intermediate.dense.weight", "[128, 64]");
    }

    [Fact]
    public void AModelLargerThanTheMachineIsRefusedBeforeItIsBuilt()
    {
        // A config that agrees with its (sparse, all-zero) checkpoint: a 32768-wide LLaMA with a
        // 2^20-row vocabulary, 128 GiB in F16, 256 GiB once built in float32.
        long have = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (have > 200L << 30) return;   // a machine this large would really try; nothing to show here
        var dir = Path.Combine(_dir, "huge");
        Directory.CreateDirectory(dir);
        const int H = 32768, V = 1 << 20;
        var config = new JsonObject
        {
            ["model_type"] = "llava",
            ["image_token_index"] = 400,
            ["vision_config"] = new JsonObject { ["hidden_size"] = 64, ["intermediate_size"] = 128, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 4, ["image_size"] = 32, ["patch_size"] = 8 },
            ["text_config"] = new JsonObject { ["model_type"] = "llama", ["hidden_size"] = H, ["intermediate_size"] = 128, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 256, ["vocab_size"] = V },
            ["vision_feature_layer"] = -1,
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        WriteSparseCheckpoint(Path.Combine(dir, "model.safetensors"), new (string, long[])[]
        {
            ("vision_tower.vision_model.embeddings.patch_embedding.weight", [64, 3, 8, 8]),
            ("vision_tower.vision_model.embeddings.position_embedding.weight", [17, 64]),
            ("vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", [128, 64]),
            ("multi_modal_projector.linear_1.weight", [H, 64]),
            ("multi_modal_projector.linear_2.weight", [H, H]),
            ("language_model.model.embed_tokens.weight", [V, H]),
            ("language_model.lm_head.weight", [V, H]),
            ("language_model.model.layers.0.mlp.gate_proj.weight", [128, H]),
            ("language_model.model.layers.0.self_attn.q_proj.weight", [H, H]),
            ("language_model.model.layers.0.self_attn.k_proj.weight", [H, H]),
        });
        long before = Process.GetCurrentProcess().PrivateMemorySize64;
        var e = Assert.Throws<ConfigException>(() => LlavaForConditionalGeneration.Load(dir));
        Assert.True(Process.GetCurrentProcess().PrivateMemorySize64 - before < 1L << 30, "allocated over 1 GiB");
        Assert.Equal("text_config.hidden_size", e.Field);
        AssertOneLineInputError(e, Path.Combine(dir, "config.json"), "more than this machine's");
    }

    /// <summary>A safetensors file of F16 tensors whose data is a hole (no disk blocks).</summary>
    private static void WriteSparseCheckpoint(string path, IEnumerable<(string Name, long[] Shape)> tensors)
    {
        var header = new JsonObject();
        long offset = 0;
        foreach (var (name, shape) in tensors)
        {
            long bytes = shape.Aggregate(2L, (a, b) => a * b);
            header[name] = new JsonObject { ["dtype"] = "F16", ["shape"] = new JsonArray(shape.Select(d => (JsonNode)d).ToArray()), ["data_offsets"] = new JsonArray(offset, offset + bytes) };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)json.Length));
        fs.Write(json);
        fs.SetLength(8 + json.Length + offset);
    }

    [Fact]
    public void AllocationFailuresBecomeOneLineErrors()
    {
        var config = Path.Combine(_dir, "config.json");
        var e = Assert.Throws<ConfigException>(() => ConfigShapeCheck.Allocate<int>(config, "text_config.hidden_size", () => throw new OutOfMemoryException()));
        AssertOneLineInputError(e, config, "text_config.hidden_size", "could not be allocated");
        // A real libtorch failure: 4 PiB of float32 is more than any allocator will hand out.
        e = Assert.Throws<ConfigException>(() => ConfigShapeCheck.Allocate(config, "vision_config.hidden_size", () => torch.empty(1L << 50, dtype: ScalarType.Float32)));
        AssertOneLineInputError(e, config, "vision_config.hidden_size", "could not be allocated");
    }

    [Fact]
    public void ATensorTooLargeToAllocateIsAOneLineError()
    {
        // 1 TiB of float32 in a sparse file. Only where the kernel refuses such an allocation outright
        // (heuristic or strict overcommit); with overcommit "always" it would be handed out and filled.
        if (!OperatingSystem.IsLinux() || File.ReadAllText("/proc/sys/vm/overcommit_memory").Trim() == "1") return;
        if (GC.GetGCMemoryInfo().TotalAvailableMemoryBytes > 512L << 30) return;
        var path = Path.Combine(_dir, "huge.safetensors");
        try { WriteSparse(path, "a", "F32", [1L << 38]); }
        catch (IOException) { return; }   // a file system without 1 TiB files
        using var f = SafeTensorsFile.Open(path);
        var e = Assert.Throws<CheckpointException>(() => f.Read("a"));
        AssertOneLineInputError(e, path, "tensor 'a'", "1024 GiB", "could not be allocated");
    }

    private static void WriteSparse(string path, string name, string dtype, long[] shape)
    {
        long bytes = shape.Aggregate((long)SafeTensorsFile.DTypeSize(dtype), (a, b) => a * b);
        var header = new JsonObject { [name] = new JsonObject { ["dtype"] = dtype, ["shape"] = new JsonArray(shape.Select(d => (JsonNode)d).ToArray()), ["data_offsets"] = new JsonArray(0, bytes) } };
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)json.Length));
        fs.Write(json);
        fs.SetLength(8 + json.Length + bytes);
    }

    // ---------------------------------------------------------------- 2. safetensors headers

    /// <summary>A safetensors file with this header (as given) and this many data bytes.</summary>
    private string RawSafetensors(string header, long dataBytes, string name = "model.safetensors", ulong? declaredHeaderLength = null)
    {
        var path = Path.Combine(_dir, name);
        var json = Encoding.UTF8.GetBytes(header);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes(declaredHeaderLength ?? (ulong)json.Length));
        fs.Write(json);
        fs.Write(new byte[dataBytes]);
        return path;
    }

    public static TheoryData<string, long, string> BadHeaders => new()
    {
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""", 4, "exactly two" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", 4, "exactly two" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,1e30]}}""", 4, "data_offsets" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,100000000000000000000000000000]}}""", 4, "data_offsets" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}""", 4, "non-negative" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}}""", 4, "data_offsets" },
        { """{"a":{"dtype":"F32","shape":[1]}}""", 4, "data_offsets" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", 4, "end before they begin" },
        { """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", 4, "needs 8" },
        { """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "shape" },
        { """{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}}""", 4, "64 bits" },
        { """{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}""", 4, "unsupported dtype" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12, "gap of 4 bytes" },
        { """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "overlaps" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "must start at 0" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 12, "8 bytes after the last tensor" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 2, "truncated" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "appears twice" },
        { """["a"]""", 0, "does not start with '{'" },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}""", 4, "unreadable safetensors header" },
        { """{"a":7}""", 0, "expected an object" },
        { """{"__metadata__":"x"}""", 0, "__metadata__" },
    };

    [Theory]
    [MemberData(nameof(BadHeaders))]
    public void MalformedSafetensorsHeadersAreOneLineErrors(string header, long dataBytes, string says)
    {
        var path = RawSafetensors(header, dataBytes);
        var e = Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path));
        AssertOneLineInputError(e, path, says);
        if (header.StartsWith("""{"a":{""", StringComparison.Ordinal) && !says.Contains("unreadable") && !says.Contains("after the last"))
            Assert.Contains("'a'", e.Message);   // the tensor is named
    }

    [Fact]
    public void WellFormedHeadersInAnyOrderAreRead()
    {
        // Stored out of name order and with an empty tensor: still contiguous once sorted by offset.
        var path = RawSafetensors("""{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[8,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"format":"pt"}}""", 8);
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(new[] { "a", "b", "e" }, f.Entries.Keys.Order());
        using var a = f.Read("a");
        Assert.Equal(0f, a.item<float>());
        Assert.Equal("pt", f.Metadata["format"]);
    }

    [Fact]
    public void HeaderLengthMustBeSaneAndInsideTheFile()
    {
        var path = RawSafetensors("""{}""", 0, declaredHeaderLength: 200_000_000);
        AssertOneLineInputError(Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path)), path, "header length 200000000");
        path = RawSafetensors("""{}""", 0, declaredHeaderLength: ulong.MaxValue);
        AssertOneLineInputError(Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path)), path, "header length");
        // Over the 100 MB limit although the file is that long (a sparse file: no disk used).
        path = Path.Combine(_dir, "long-header.safetensors");
        using (var fs = File.Create(path))
        {
            fs.Write(BitConverter.GetBytes(100_000_001UL));
            fs.SetLength(8 + 100_000_001L);
        }
        AssertOneLineInputError(Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path)), path, "at most 100000000 bytes");
        File.WriteAllBytes(path, new byte[5]);
        AssertOneLineInputError(Assert.Throws<CheckpointException>(() => SafeTensorsFile.Open(path)), path, "truncated");
    }

    private string ShardedFolder(Func<string, string> shardOf)
    {
        var dir = CopyFixture(Fixtures.BlipTiny, "sharded");
        using (var f = SafeTensorsFile.Open(Path.Combine(dir, "model.safetensors")))
        {
            var map = f.Entries.Keys.ToDictionary(n => n, shardOf);
            File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), System.Text.Json.JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
        }
        return dir;
    }

    [Theory]
    [InlineData("../model.safetensors", "leads out of the model folder")]
    [InlineData("sub/../../outside.safetensors", "leads out of the model folder")]
    [InlineData("/etc/passwd", "absolute path")]
    [InlineData("", "is empty")]
    public void ShardNamesMustStayInsideTheModelFolder(string shard, string says)
    {
        // The shard the index points at exists (one level up), so only the name check stops it.
        var dir = ShardedFolder(n => n.StartsWith("vision", StringComparison.Ordinal) ? shard : "model.safetensors");
        File.Copy(Path.Combine(dir, "model.safetensors"), Path.Combine(_dir, "model.safetensors"));
        File.Move(Path.Combine(dir, "model.safetensors"), Path.Combine(dir, "model-00001-of-00001.safetensors"));
        var index = Path.Combine(dir, "model.safetensors.index.json");
        File.WriteAllText(index, File.ReadAllText(index).Replace("\"model.safetensors\"", "\"model-00001-of-00001.safetensors\""));
        var e = Assert.Throws<CheckpointException>(() => TensorStore.Open(dir));
        AssertOneLineInputError(e, index, says);
        if (shard.Length > 0) Assert.Contains(shard, e.Message);
    }

    [Fact]
    public void IndexEntriesMustBeFileNames()
    {
        var dir = CopyFixture(Fixtures.BlipTiny, "badindex");
        File.Delete(Path.Combine(dir, "model.safetensors"));
        var index = Path.Combine(dir, "model.safetensors.index.json");
        File.WriteAllText(index, """{"weight_map": {"vision_model.post_layernorm.bias": 3}}""");
        AssertOneLineInputError(Assert.Throws<CheckpointException>(() => TensorStore.Open(dir)), index, "vision_model.post_layernorm.bias", "must be a shard file name");
        File.WriteAllText(index, """[1, 2]""");
        AssertOneLineInputError(Assert.Throws<CheckpointException>(() => TensorStore.Open(dir)), index, "weight_map");
        File.WriteAllText(index, """{"weight_map": {"x": "model-1.safetensors"}""");
        AssertOneLineInputError(Assert.Throws<CheckpointException>(() => TensorStore.Open(dir)), index, "invalid JSON");
    }

    // ---------------------------------------------------------------- 3. Hugging Face cache folders

    /// <summary>
    /// A Hugging Face hub cache for <paramref name="fixture"/>: blobs/&lt;sha256&gt; holds the files,
    /// snapshots/&lt;commit&gt;/&lt;name&gt; are relative links to ../../blobs/&lt;sha256&gt;.
    /// Returns the snapshot folder.
    /// </summary>
    private string HubCache(string fixture, string name)
    {
        var repo = Path.Combine(_dir, "hub", $"models--test--{name}");
        var blobs = Path.Combine(repo, "blobs");
        var snapshot = Path.Combine(repo, "snapshots", "0123456789abcdef0123456789abcdef01234567");
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(snapshot);
        foreach (var f in Directory.GetFiles(fixture))
        {
            var sha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f)));
            var blob = Path.Combine(blobs, sha);
            if (!File.Exists(blob)) File.Copy(f, blob);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(f)), Path.Combine("..", "..", "blobs", sha));
        }
        return snapshot;
    }

    [Fact]
    public void BlipLoadsFromAHubCacheOfLinks()
    {
        var snapshot = HubCache(Fixtures.BlipTiny, "blip-tiny");
        var link = Path.Combine(snapshot, "model.safetensors");
        Assert.NotNull(new FileInfo(link).LinkTarget);
        Assert.Equal((InputFileKind.Regular, new FileInfo(Path.Combine(Fixtures.BlipTiny, "model.safetensors")).Length), InputFiles.Stat(link));

        using var plain = BlipVqa.Load(Fixtures.BlipTiny);
        using var linked = BlipVqa.Load(snapshot);
        var image = Path.Combine(snapshot, "red_circle_blue_square.png");
        var a = plain.Answer(Path.Combine(Fixtures.BlipTiny, "red_circle_blue_square.png"), "what color is the circle?");
        var b = linked.Answer(image, "what color is the circle?");
        Assert.Equal(a.Text, b.Text);
        Assert.Equal(a.Ids, b.Ids);
        Assert.Equal(a.FirstStepLogits, b.FirstStepLogits);
    }

    [Fact]
    public void LlavaLoadsFromAHubCacheOfLinksWithShards()
    {
        var snapshot = HubCache(Fixtures.LlavaTiny, "llava-tiny");
        Assert.NotNull(new FileInfo(Path.Combine(snapshot, "model.safetensors.index.json")).LinkTarget);
        using var plain = LlavaVqa.Load(Fixtures.LlavaTiny);
        using var linked = LlavaVqa.Load(snapshot);
        var a = plain.Answer(Path.Combine(Fixtures.LlavaTiny, "yellow_circle.png"), "What shape is this?", maxNewTokens: 4);
        var b = linked.Answer(Path.Combine(snapshot, "yellow_circle.png"), "What shape is this?", maxNewTokens: 4);
        Assert.Equal(a.Text, b.Text);
        Assert.Equal(a.Ids, b.Ids);
        Assert.Equal(a.LastLogits, b.LastLogits);
    }

    [Fact]
    public void ADanglingLinkIsAMissingFile()
    {
        var dir = CopyFixture(Fixtures.BlipTiny, "dangling");
        var weights = Path.Combine(dir, "model.safetensors");
        File.Delete(weights);
        File.CreateSymbolicLink(weights, Path.Combine("..", "blobs", "0000"));
        var e = Assert.Throws<CheckpointException>(() => BlipForQuestionAnswering.Load(dir));
        AssertOneLineInputError(e, weights, "not found");
    }

    // ---------------------------------------------------------------- 4. images

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    private static void Chunk(Stream s, string type, byte[] data)
    {
        var len = BitConverter.GetBytes(data.Length); Array.Reverse(len);
        s.Write(len);
        var typed = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        s.Write(typed);
        uint crc = 0xFFFFFFFFu;
        foreach (var b in typed) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        var c = BitConverter.GetBytes(crc ^ 0xFFFFFFFFu); Array.Reverse(c);
        s.Write(c);
    }

    /// <summary>A complete, valid 1-bit grey PNG of <paramref name="width"/> x <paramref name="height"/>
    /// black pixels: a few tens of KiB on disk.</summary>
    private static void WriteBlackPng(string path, int width, int height)
    {
        using var fs = File.Create(path);
        fs.Write(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A });
        var ihdr = new byte[13];
        BitConverter.GetBytes(width).Reverse().ToArray().CopyTo(ihdr, 0);
        BitConverter.GetBytes(height).Reverse().ToArray().CopyTo(ihdr, 4);
        ihdr[8] = 1;   // bit depth 1, colour type 0 (grey), deflate, no filter method, no interlace
        Chunk(fs, "IHDR", ihdr);
        var idat = new MemoryStream();
        using (var z = new ZLibStream(idat, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            var row = new byte[1 + (width + 7) / 8];   // filter byte 0, then zeros
            for (int y = 0; y < height; y++) z.Write(row);
        }
        Chunk(fs, "IDAT", idat.ToArray());
        Chunk(fs, "IEND", []);
    }

    [Fact]
    public void ADecompressionBombIsRefusedFromItsHeader()
    {
        var path = Path.Combine(_dir, "bomb.png");
        WriteBlackPng(path, 16000, 16000);
        Assert.True(new FileInfo(path).Length < 1 << 20);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        long before = Process.GetCurrentProcess().PrivateMemorySize64;
        var watch = Stopwatch.StartNew();
        var e = Assert.Throws<ImageException>(() => ImageDecoder.Load(path));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 16L << 20, "allocated over 16 MiB");
        Assert.True(Process.GetCurrentProcess().PrivateMemorySize64 - before < 256L << 20, "grew by over 256 MiB");
        AssertOneLineInputError(e, path, "16000x16000", "256000000 pixels", "178956970");

        // Just under the limit in one dimension is not the point; a small image of the same making decodes.
        var small = Path.Combine(_dir, "small.png");
        WriteBlackPng(small, 40, 30);
        var img = ImageDecoder.Load(small);
        Assert.Equal((40, 30), (img.Width, img.Height));
    }

    [Fact]
    public void AnImageFileOverTheSizeLimitIsNotRead()
    {
        var path = Path.Combine(_dir, "huge.png");
        File.Copy(Path.Combine(Fixtures.BlipTiny, "red_circle_blue_square.png"), path);
        using (var fs = new FileStream(path, FileMode.Open)) fs.SetLength(ImageDecoder.MaxFileBytes + 1);   // sparse
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ImageException>(() => ImageDecoder.Load(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 16L << 20, "read the file");
        AssertOneLineInputError(e, path, "more than the 256 MiB allowed");
    }

    [Fact]
    public async Task FilesThatAreNotRegularFilesAreRefusedWithoutReadingThem()
    {
        if (!OperatingSystem.IsLinux()) return;
        var e = Assert.Throws<ImageException>(() => ImageDecoder.Load("/dev/zero"));
        AssertOneLineInputError(e, "/dev/zero", "character device");

        e = Assert.Throws<ImageException>(() => ImageDecoder.Load(_dir));
        AssertOneLineInputError(e, _dir, "is a directory");

        var fifo = Path.Combine(_dir, "pipe.png");
        using (var mk = Process.Start(new ProcessStartInfo("mkfifo", [fifo]) { UseShellExecute = false })!) mk.WaitForExit();
        Assert.True(File.Exists(fifo));
        // Opening a FIFO with no writer blocks forever: the check must not open it.
        var load = Task.Run(() => ImageDecoder.Load(fifo));
        Assert.True(await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(10))) == load, "loading a FIFO hung");
        var fe = Assert.IsType<ImageException>(load.Exception!.InnerException);
        AssertOneLineInputError(fe, fifo, "FIFO");

        // A link to /dev/zero is followed and refused the same way; so are config.json and weights that are devices.
        var link = Path.Combine(_dir, "zero.png");
        File.CreateSymbolicLink(link, "/dev/zero");
        AssertOneLineInputError(Assert.Throws<ImageException>(() => ImageDecoder.Load(link)), link, "character device");
        var dir = CopyFixture(Fixtures.BlipTiny, "devices");
        File.Delete(Path.Combine(dir, "model.safetensors"));
        File.CreateSymbolicLink(Path.Combine(dir, "model.safetensors"), "/dev/zero");
        AssertOneLineInputError(Assert.Throws<CheckpointException>(() => BlipForQuestionAnswering.Load(dir)), Path.Combine(dir, "model.safetensors"), "character device");
        File.Delete(Path.Combine(dir, "config.json"));
        File.CreateSymbolicLink(Path.Combine(dir, "config.json"), fifo);
        AssertOneLineInputError(Assert.Throws<ConfigException>(() => BlipForQuestionAnswering.Load(dir)), Path.Combine(dir, "config.json"), "FIFO");
    }

    [Fact]
    public async Task TokenizerAndPreprocessorFilesThatAreNotRegularFilesAreRefused()
    {
        if (!OperatingSystem.IsLinux()) return;
        var fifo = Path.Combine(_dir, "pipe");
        using (var mk = Process.Start(new ProcessStartInfo("mkfifo", [fifo]) { UseShellExecute = false })!) mk.WaitForExit();
        static async Task<Exception> Load(Func<object> load)
        {
            var task = Task.Run(load);
            Assert.True(await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(10))) == task, "loading hung");
            return task.Exception!.InnerException!;
        }
        var blip = CopyFixture(Fixtures.BlipTiny, "blip");
        foreach (var (file, target, says) in new[] { ("vocab.txt", "/dev/zero", "character device"), ("tokenizer_config.json", fifo, "FIFO"), ("preprocessor_config.json", "/dev/zero", "character device") })
        {
            var path = Path.Combine(blip, file);
            File.Move(path, path + ".bak");
            File.CreateSymbolicLink(path, target);
            AssertOneLineInputError(await Load(() => BlipVqa.Load(blip)), path, says);
            File.Delete(path);
            File.Move(path + ".bak", path);
        }
        var llava = CopyFixture(Fixtures.LlavaTiny, "llava");
        var model = Path.Combine(llava, "tokenizer.model");
        File.Delete(model);
        File.CreateSymbolicLink(model, fifo);
        AssertOneLineInputError(await Load(() => LlavaVqa.Load(llava)), model, "FIFO");
    }

    [Fact]
    public void AnImageReachedThroughALinkDecodes()
    {
        var link = Path.Combine(_dir, "linked.png");
        var target = Path.Combine(Fixtures.BlipTiny, "red_circle_blue_square.png");
        File.CreateSymbolicLink(link, target);
        var a = ImageDecoder.Load(target);
        var b = ImageDecoder.Load(link);
        Assert.Equal(a.Pixels, b.Pixels);
    }
}

/// <summary>Through the command line: hostile inputs end in exit code 2 and one "error: ..." line.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class HostileModelInputCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-hostile-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int Code, string Err)> Run(params string[] args)
    {
        var (code, _, error) = await CliRun.RunAsync(Notice.Cli.Commands.AnswerCommand.Create(), args);
        return (code, error);
    }

    [Fact]
    public async Task AHostileConfigAndDevZeroAsImageAreOneErrorLineEach()
    {
        foreach (var f in Directory.GetFiles(Fixtures.BlipTiny)) File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
        var config = Path.Combine(_dir, "config.json");
        var o = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        o["vision_config"]!["hidden_size"] = 32768;
        o["text_config"]!["hidden_size"] = 32768;
        File.WriteAllText(config, o.ToJsonString());
        var image = Path.Combine(Fixtures.BlipTiny, "red_circle_blue_square.png");
        var (code, err) = await Run("answer", "--model", _dir, "--image", image, "--question", "what is it?");
        Assert.Equal(2, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.StartsWith($"error: {config}: field 'vision_config.hidden_size'", err.Trim());

        if (!OperatingSystem.IsLinux()) return;
        (code, err) = await Run("answer", "--model", Fixtures.BlipTiny, "--image", "/dev/zero", "--question", "what is it?");
        Assert.Equal(2, code);
        Assert.Equal("error: /dev/zero: is a character device, not a regular file", err.Trim());
    }
}
