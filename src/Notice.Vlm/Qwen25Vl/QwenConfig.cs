using Notice.Vlm.Blip;
using Notice.Vlm.Config;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>
/// Qwen2_5_VLVisionConfig as transformers 4.49 reads it (defaults for omitted fields are the class
/// defaults). config.json may also carry <c>in_chans</c> and <c>spatial_patch_size</c>, which
/// transformers does not read; neither is read here.
/// </summary>
public sealed record QwenVisionConfig
{
    public int Depth { get; init; } = 32;
    public int HiddenSize { get; init; } = 3584;
    public string HiddenAct { get; init; } = "silu";
    public int IntermediateSize { get; init; } = 3420;
    public int NumHeads { get; init; } = 16;
    public int InChannels { get; init; } = 3;
    public int PatchSize { get; init; } = 14;
    public int SpatialMergeSize { get; init; } = 2;
    public int TemporalPatchSize { get; init; } = 2;
    /// <summary>The window attention's side in pixels (112 in the real checkpoints).</summary>
    public int WindowSize { get; init; } = 112;
    /// <summary>The width of the merged image features: the language model's hidden size.</summary>
    public int OutHiddenSize { get; init; } = 3584;
    /// <summary>Blocks that attend over the whole image; the others attend inside windows.</summary>
    public int[] FullAttBlockIndexes { get; init; } = [7, 15, 23, 31];
    public int TokensPerSecond { get; init; } = 4;

    public int HeadDim => HiddenSize / NumHeads;
    /// <summary>Patches per merge unit (spatial_merge_size^2).</summary>
    public int MergeUnit => SpatialMergeSize * SpatialMergeSize;
    /// <summary>The window's side in merge units.</summary>
    public int WindowMergeUnits => WindowSize / SpatialMergeSize / PatchSize;
    /// <summary>Columns of one row of pixel_values: channels x frames x patch x patch.</summary>
    public int PatchInputSize => InChannels * TemporalPatchSize * PatchSize * PatchSize;

    internal static QwenVisionConfig Read(JsonConfig c) => new()
    {
        Depth = c.Int("depth", 32),
        HiddenSize = c.Int("hidden_size", 3584),
        HiddenAct = c.String("hidden_act", "silu"),
        IntermediateSize = c.Int("intermediate_size", 3420),
        NumHeads = c.Int("num_heads", 16),
        InChannels = c.Int("in_channels", 3),
        PatchSize = c.Int("patch_size", 14),
        SpatialMergeSize = c.Int("spatial_merge_size", 2),
        TemporalPatchSize = c.Int("temporal_patch_size", 2),
        WindowSize = c.Int("window_size", 112),
        OutHiddenSize = c.Int("out_hidden_size", 3584),
        FullAttBlockIndexes = JsonLists.Ints(c, "fullatt_block_indexes") ?? [7, 15, 23, 31],
        TokensPerSecond = c.Int("tokens_per_second", 4),
    };
}

/// <summary>A config field that is a list of integers.</summary>
internal static class JsonLists
{
    /// <summary>The list, or null where the field is absent; anything but a list of integers is an error naming the field.</summary>
    public static int[]? Ints(JsonConfig c, string name)
    {
        if (!c.Has(name)) return null;
        if (c.Object[name] is not System.Text.Json.Nodes.JsonArray list)
            throw c.Error(name, $"expected a list of integers, found {c.Object[name]!.ToJsonString()}");
        try
        {
            return list.Select(v => v!.GetValue<int>()).ToArray();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException)
        {
            throw c.Error(name, $"expected a list of integers, found {list.ToJsonString()}");
        }
    }
}

/// <summary>
/// Qwen2_5_VLConfig (model_type "qwen2_5_vl") as Qwen2_5_VLForConditionalGeneration reads it in
/// transformers 4.49: the language model's (Qwen2) fields are top-level (or in text_config, as
/// transformers 4.52+ saves them), the vision tower's are in vision_config. rope_scaling {"type": "mrope", "mrope_section": [t, h, w]} gives plain RoPE
/// frequencies whose channels are split among the three position axes (M-RoPE).
/// </summary>
public sealed record QwenConfig
{
    public required QwenVisionConfig Vision { get; init; }
    public int VocabSize { get; init; } = 152064;
    public int HiddenSize { get; init; } = 8192;
    public int IntermediateSize { get; init; } = 29568;
    public int NumHiddenLayers { get; init; } = 80;
    public int NumAttentionHeads { get; init; } = 64;
    public int NumKeyValueHeads { get; init; } = 8;
    public string HiddenAct { get; init; } = "silu";
    public double RmsNormEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 1000000.0;
    /// <summary>Rotary frequencies per position axis (temporal, height, width); they sum to head_dim / 2.</summary>
    public int[] MropeSection { get; init; } = [16, 24, 24];
    public bool TieWordEmbeddings { get; init; }
    public int BosTokenId { get; init; } = 151643;
    public int EosTokenId { get; init; } = 151645;
    public int VisionStartTokenId { get; init; } = 151652;
    public int VisionEndTokenId { get; init; } = 151653;
    public int VisionTokenId { get; init; } = 151654;
    public int ImageTokenId { get; init; } = 151655;
    public int VideoTokenId { get; init; } = 151656;

    public int HeadDim => HiddenSize / NumAttentionHeads;

    public static QwenConfig Load(string configFile)
    {
        var c = JsonConfig.Load(configFile);
        var modelType = c.String("model_type", "");
        if (modelType != "qwen2_5_vl")
            throw c.Error("model_type", $"expected \"qwen2_5_vl\" (Qwen2_5_VLForConditionalGeneration), found \"{modelType}\"");
        // transformers 4.49 writes the language model's fields at the top level; later versions
        // (4.52+) save them in text_config, which is read instead when present.
        var text = c.Has("text_config") ? c.Section("text_config") : c;
        var cfg = new QwenConfig
        {
            Vision = QwenVisionConfig.Read(c.Section("vision_config")),
            VocabSize = text.Int("vocab_size", 152064),
            HiddenSize = text.Int("hidden_size", 8192),
            IntermediateSize = text.Int("intermediate_size", 29568),
            NumHiddenLayers = text.Int("num_hidden_layers", 80),
            NumAttentionHeads = text.Int("num_attention_heads", 64),
            NumKeyValueHeads = text.Int("num_key_value_heads", 8),
            HiddenAct = text.String("hidden_act", "silu"),
            RmsNormEps = text.Double("rms_norm_eps", 1e-5),
            RopeTheta = text.Double("rope_theta", 1000000.0),
            MropeSection = ReadMropeSection(text),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", text.Bool("tie_word_embeddings", false)),
            BosTokenId = c.Int("bos_token_id", 151643),
            EosTokenId = c.Int("eos_token_id", 151645),
            VisionStartTokenId = c.Int("vision_start_token_id", 151652),
            VisionEndTokenId = c.Int("vision_end_token_id", 151653),
            VisionTokenId = c.Int("vision_token_id", 151654),
            ImageTokenId = c.Int("image_token_id", 151655),
            VideoTokenId = c.Int("video_token_id", 151656),
        };
        cfg.Validate(c, text);
        return cfg;
    }

    /// <summary>Writes a config.json that <see cref="Load"/> reads back (transformers 4.49's layout: text fields top-level).</summary>
    public void Save(string configFile, string torchDtype = "bfloat16")
    {
        var v = Vision;
        var o = new System.Text.Json.Nodes.JsonObject
        {
            ["architectures"] = new System.Text.Json.Nodes.JsonArray("Qwen2_5_VLForConditionalGeneration"),
            ["model_type"] = "qwen2_5_vl",
            ["vocab_size"] = VocabSize, ["hidden_size"] = HiddenSize, ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers, ["num_attention_heads"] = NumAttentionHeads, ["num_key_value_heads"] = NumKeyValueHeads,
            ["hidden_act"] = HiddenAct, ["rms_norm_eps"] = RmsNormEps, ["rope_theta"] = RopeTheta,
            ["rope_scaling"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "mrope", ["mrope_section"] = new System.Text.Json.Nodes.JsonArray(MropeSection.Select(i => (System.Text.Json.Nodes.JsonNode?)i).ToArray()) },
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["bos_token_id"] = BosTokenId, ["eos_token_id"] = EosTokenId,
            ["vision_start_token_id"] = VisionStartTokenId, ["vision_end_token_id"] = VisionEndTokenId,
            ["vision_token_id"] = VisionTokenId, ["image_token_id"] = ImageTokenId, ["video_token_id"] = VideoTokenId,
            ["torch_dtype"] = torchDtype,
            ["transformers_version"] = "4.49.0",
            ["vision_config"] = new System.Text.Json.Nodes.JsonObject
            {
                ["depth"] = v.Depth, ["hidden_size"] = v.HiddenSize, ["hidden_act"] = v.HiddenAct, ["intermediate_size"] = v.IntermediateSize,
                ["num_heads"] = v.NumHeads, ["in_chans"] = v.InChannels, ["patch_size"] = v.PatchSize, ["spatial_merge_size"] = v.SpatialMergeSize,
                ["temporal_patch_size"] = v.TemporalPatchSize, ["window_size"] = v.WindowSize, ["out_hidden_size"] = v.OutHiddenSize,
                ["fullatt_block_indexes"] = new System.Text.Json.Nodes.JsonArray(v.FullAttBlockIndexes.Select(i => (System.Text.Json.Nodes.JsonNode?)i).ToArray()),
                ["tokens_per_second"] = v.TokensPerSecond,
            },
        };
        File.WriteAllText(configFile, o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    private static int[] ReadMropeSection(JsonConfig c)
    {
        var scaling = c.Section("rope_scaling");
        if (!c.Has("rope_scaling"))
            throw c.Error("rope_scaling", "missing: Qwen2.5-VL needs {\"type\": \"mrope\", \"mrope_section\": [t, h, w]}");
        // transformers turns type "mrope" into default RoPE frequencies; "rope_type" is the newer key.
        var type = scaling.Has("type") ? scaling.String("type", "") : scaling.String("rope_type", "default");
        if (type is not ("mrope" or "default"))
            throw scaling.Error("type", $"expected \"mrope\", found \"{type}\" (scaled rotary embeddings are not supported)");
        return JsonLists.Ints(scaling, "mrope_section")
            ?? throw scaling.Error("mrope_section", "missing: expected three integers (temporal, height, width) summing to head_dim / 2");
    }

    private void Validate(JsonConfig c, JsonConfig text)
    {
        if (HiddenSize % NumAttentionHeads != 0)
            throw text.Error("num_attention_heads", $"hidden_size {HiddenSize} is not a multiple of {NumAttentionHeads} heads");
        if (NumKeyValueHeads <= 0 || NumAttentionHeads % NumKeyValueHeads != 0)
            throw text.Error("num_key_value_heads", $"{NumAttentionHeads} attention heads cannot be shared evenly by {NumKeyValueHeads} key/value heads");
        if (MropeSection.Length != 3 || MropeSection.Any(s => s < 0) || MropeSection.Sum() * 2 != HeadDim)
            throw text.Error("rope_scaling.mrope_section", $"[{string.Join(", ", MropeSection)}] must be three non-negative integers whose sum times 2 is head_dim {HeadDim} (hidden_size / num_attention_heads)");
        var v = Vision;
        var vc = c.Section("vision_config");
        if (v.NumHeads <= 0 || v.HiddenSize % v.NumHeads != 0)
            throw vc.Error("num_heads", $"hidden_size {v.HiddenSize} is not a multiple of {v.NumHeads} heads");
        if (v.HeadDim % 4 != 0)
            throw vc.Error("num_heads", $"the 2D rotary embedding needs a head size divisible by 4, found {v.HeadDim}");
        if (v.PatchSize <= 0 || v.SpatialMergeSize <= 0 || v.TemporalPatchSize <= 0)
            throw vc.Error("patch_size", "patch_size, spatial_merge_size and temporal_patch_size must be positive");
        if (v.WindowMergeUnits <= 0)
            throw vc.Error("window_size", $"{v.WindowSize} px is smaller than one merge unit ({v.SpatialMergeSize * v.PatchSize} px)");
        if (v.OutHiddenSize != HiddenSize)
            throw vc.Error("out_hidden_size", $"is {v.OutHiddenSize}, but the language model's hidden_size is {HiddenSize}");
        if (v.FullAttBlockIndexes.Any(i => i < 0 || i >= v.Depth))
            throw vc.Error("fullatt_block_indexes", $"[{string.Join(", ", v.FullAttBlockIndexes)}] names a block outside 0..{v.Depth - 1}");
        foreach (var (name, id) in new[] { ("image_token_id", ImageTokenId), ("vision_start_token_id", VisionStartTokenId), ("vision_end_token_id", VisionEndTokenId) })
            if (id < 0 || id >= VocabSize)
                throw c.Error(name, $"{id} is outside the language model's vocabulary (vocab_size {VocabSize})");
        if (!Activations.Supports(HiddenAct)) throw text.Error("hidden_act", $"unsupported activation \"{HiddenAct}\"");
        if (!Activations.Supports(v.HiddenAct)) throw vc.Error("hidden_act", $"unsupported activation \"{v.HiddenAct}\"");
    }
}

/// <summary>
/// generation_config.json's greedy-decoding fields: eos_token_id (one id or a list) and
/// pad_token_id. Without the file (or the fields): config.json's eos_token_id, padding with it.
/// </summary>
public sealed record QwenGenerationConfig(long[] EosTokenIds, long PadTokenId)
{
    public static QwenGenerationConfig Load(string folder, QwenConfig config)
    {
        var path = Path.Combine(folder, "generation_config.json");
        if (!File.Exists(path)) return new([config.EosTokenId], config.EosTokenId);
        var c = JsonConfig.Load(path);
        long[] eos;
        if (c.Object["eos_token_id"] is System.Text.Json.Nodes.JsonArray)
            eos = (JsonLists.Ints(c, "eos_token_id") ?? []).Select(i => (long)i).ToArray();
        else eos = [c.Int("eos_token_id", config.EosTokenId)];
        if (eos.Length == 0) throw c.Error("eos_token_id", "an empty list: generation would never stop");
        foreach (var id in eos)
            if (id < 0 || id >= config.VocabSize) throw c.Error("eos_token_id", $"{id} is outside the vocabulary (vocab_size {config.VocabSize})");
        long pad = c.Int("pad_token_id", (int)eos[0]);
        if (pad < 0 || pad >= config.VocabSize) throw c.Error("pad_token_id", $"{pad} is outside the vocabulary (vocab_size {config.VocabSize})");
        return new(eos, pad);
    }
}
