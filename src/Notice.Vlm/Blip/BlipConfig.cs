using System.Text.Json.Nodes;
using Notice.Vlm.Config;

namespace Notice.Vlm.Blip;

/// <summary>BlipVisionConfig, with transformers 4.41's defaults for omitted fields.</summary>
public sealed record BlipVisionConfig
{
    public int HiddenSize { get; init; } = 768;
    public int IntermediateSize { get; init; } = 3072;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public int ImageSize { get; init; } = 384;
    public int PatchSize { get; init; } = 16;
    public string HiddenAct { get; init; } = "gelu";
    public double LayerNormEps { get; init; } = 1e-5;
    public int ProjectionDim { get; init; } = 512;
    public double InitializerRange { get; init; } = 1e-10;

    public int HeadDim => HiddenSize / NumAttentionHeads;
    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);

    internal static BlipVisionConfig Read(JsonConfig c) => new()
    {
        HiddenSize = c.Size("hidden_size", 768, 1, ConfigLimits.HiddenSize),
        IntermediateSize = c.Size("intermediate_size", 3072, 1, ConfigLimits.IntermediateSize),
        NumHiddenLayers = c.Size("num_hidden_layers", 12, 1, ConfigLimits.Layers),
        NumAttentionHeads = c.Size("num_attention_heads", 12, 1, ConfigLimits.Heads),
        ImageSize = c.Size("image_size", 384, 1, ConfigLimits.ImageSize),
        PatchSize = c.Size("patch_size", 16, 1, ConfigLimits.PatchSize),
        HiddenAct = c.String("hidden_act", "gelu"),
        LayerNormEps = c.Double("layer_norm_eps", 1e-5),
        ProjectionDim = c.Int("projection_dim", 512),
        InitializerRange = c.Double("initializer_range", 1e-10),
    };

    internal JsonObject ToJson() => new()
    {
        ["model_type"] = "blip_vision_model",
        ["hidden_size"] = HiddenSize,
        ["intermediate_size"] = IntermediateSize,
        ["num_hidden_layers"] = NumHiddenLayers,
        ["num_attention_heads"] = NumAttentionHeads,
        ["image_size"] = ImageSize,
        ["patch_size"] = PatchSize,
        ["hidden_act"] = HiddenAct,
        ["layer_norm_eps"] = LayerNormEps,
        ["projection_dim"] = ProjectionDim,
        ["initializer_range"] = InitializerRange,
    };
}

/// <summary>BlipTextConfig, with transformers 4.41's defaults for omitted fields.</summary>
public sealed record BlipTextConfig
{
    public int VocabSize { get; init; } = 30524;
    public int HiddenSize { get; init; } = 768;
    public int EncoderHiddenSize { get; init; } = 768;
    public int IntermediateSize { get; init; } = 3072;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 8;
    public int MaxPositionEmbeddings { get; init; } = 512;
    public string HiddenAct { get; init; } = "gelu";
    public double LayerNormEps { get; init; } = 1e-12;
    public int BosTokenId { get; init; } = 30522;
    public int EosTokenId { get; init; } = 2;
    public int PadTokenId { get; init; } = 0;
    public int SepTokenId { get; init; } = 102;
    public double InitializerRange { get; init; } = 0.02;
    public int ProjectionDim { get; init; } = 768;

    public int HeadDim => HiddenSize / NumAttentionHeads;

    internal static BlipTextConfig Read(JsonConfig c) => new()
    {
        VocabSize = c.Size("vocab_size", 30524, 1, ConfigLimits.VocabSize),
        HiddenSize = c.Size("hidden_size", 768, 1, ConfigLimits.HiddenSize),
        EncoderHiddenSize = c.Size("encoder_hidden_size", 768, 1, ConfigLimits.HiddenSize),
        IntermediateSize = c.Size("intermediate_size", 3072, 1, ConfigLimits.IntermediateSize),
        NumHiddenLayers = c.Size("num_hidden_layers", 12, 1, ConfigLimits.Layers),
        NumAttentionHeads = c.Size("num_attention_heads", 8, 1, ConfigLimits.Heads),
        MaxPositionEmbeddings = c.Size("max_position_embeddings", 512, 1, ConfigLimits.Positions),
        HiddenAct = c.String("hidden_act", "gelu"),
        LayerNormEps = c.Double("layer_norm_eps", 1e-12),
        BosTokenId = c.Int("bos_token_id", 30522),
        EosTokenId = c.Int("eos_token_id", 2),
        PadTokenId = c.Int("pad_token_id", 0),
        SepTokenId = c.Int("sep_token_id", 102),
        InitializerRange = c.Double("initializer_range", 0.02),
        ProjectionDim = c.Int("projection_dim", 768),
    };

    internal JsonObject ToJson() => new()
    {
        ["model_type"] = "blip_text_model",
        ["vocab_size"] = VocabSize,
        ["hidden_size"] = HiddenSize,
        ["encoder_hidden_size"] = EncoderHiddenSize,
        ["intermediate_size"] = IntermediateSize,
        ["num_hidden_layers"] = NumHiddenLayers,
        ["num_attention_heads"] = NumAttentionHeads,
        ["max_position_embeddings"] = MaxPositionEmbeddings,
        ["hidden_act"] = HiddenAct,
        ["layer_norm_eps"] = LayerNormEps,
        ["bos_token_id"] = BosTokenId,
        ["eos_token_id"] = EosTokenId,
        ["pad_token_id"] = PadTokenId,
        ["sep_token_id"] = SepTokenId,
        ["initializer_range"] = InitializerRange,
        ["projection_dim"] = ProjectionDim,
        ["is_decoder"] = true,
        ["use_cache"] = true,
    };
}

/// <summary>BlipConfig (model_type "blip") as BlipForQuestionAnswering reads it.</summary>
public sealed record BlipConfig
{
    public required BlipVisionConfig Vision { get; init; }
    public required BlipTextConfig Text { get; init; }
    public int ProjectionDim { get; init; } = 512;
    public double LogitScaleInitValue { get; init; } = 2.6592;
    public int ImageTextHiddenSize { get; init; } = 256;

    public static BlipConfig Load(string configFile)
    {
        var c = JsonConfig.Load(configFile);
        var modelType = c.String("model_type", "");
        if (modelType != "blip")
            throw c.Error("model_type", $"expected \"blip\" (BlipForQuestionAnswering), found \"{modelType}\"");
        var vision = BlipVisionConfig.Read(c.Section("vision_config"));
        // BlipConfig.__init__ overrides the text encoder's cross-attention width with the vision width.
        var text = BlipTextConfig.Read(c.Section("text_config")) with { EncoderHiddenSize = vision.HiddenSize };
        var cfg = new BlipConfig
        {
            Vision = vision,
            Text = text,
            ProjectionDim = c.Int("projection_dim", 512),
            LogitScaleInitValue = c.Double("logit_scale_init_value", 2.6592),
            ImageTextHiddenSize = c.Int("image_text_hidden_size", 256),
        };
        cfg.Validate(c);
        return cfg;
    }

    private void Validate(JsonConfig c)
    {
        // Every size field is already within [1, its ConfigLimits cap] (JsonConfig.Size), so nothing
        // below divides by zero, and the patch grid is computed in 64 bits before it is trusted.
        if (Vision.PatchSize > Vision.ImageSize)
            throw c.Error("vision_config.patch_size", $"{Vision.PatchSize} is larger than image_size {Vision.ImageSize}");
        long patches = (long)(Vision.ImageSize / Vision.PatchSize) * (Vision.ImageSize / Vision.PatchSize);
        if (patches > ConfigLimits.Patches)
            throw c.Error("vision_config.image_size", $"image_size {Vision.ImageSize} with patch_size {Vision.PatchSize} makes {patches} patches, more than the {ConfigLimits.Patches} allowed");
        if (Vision.HiddenSize % Vision.NumAttentionHeads != 0)
            throw c.Error("vision_config.num_attention_heads", $"hidden_size {Vision.HiddenSize} is not a multiple of {Vision.NumAttentionHeads} heads");
        if (Text.HiddenSize % Text.NumAttentionHeads != 0)
            throw c.Error("text_config.num_attention_heads", $"hidden_size {Text.HiddenSize} is not a multiple of {Text.NumAttentionHeads} heads");
        if (Vision.ImageSize % Vision.PatchSize != 0)
            throw c.Error("vision_config.patch_size", $"image_size {Vision.ImageSize} is not a multiple of patch_size {Vision.PatchSize}");
        if (Vision.HiddenSize != Text.HiddenSize)
            throw c.Error("vision_config.hidden_size", $"BlipForQuestionAnswering needs the vision width ({Vision.HiddenSize}) to equal the text width ({Text.HiddenSize})");
        foreach (var (name, act) in new[] { ("vision_config.hidden_act", Vision.HiddenAct), ("text_config.hidden_act", Text.HiddenAct) })
            if (act is not ("gelu" or "gelu_new" or "gelu_pytorch_tanh" or "relu" or "quick_gelu"))
                throw c.Error(name, $"unsupported activation \"{act}\"");
        // Token ids index the embedding tables: one outside the vocabulary would fail deep inside torch.
        foreach (var (name, id) in new[] { ("text_config.bos_token_id", Text.BosTokenId), ("text_config.sep_token_id", Text.SepTokenId), ("text_config.pad_token_id", Text.PadTokenId) })
            if (id < 0 || id >= Text.VocabSize)
                throw c.Error(name, $"{id} is outside the vocabulary (text_config.vocab_size {Text.VocabSize})");
    }

    /// <summary>Stored tensors whose shapes follow from the size fields, each dimension with the field
    /// it comes from (checked against the checkpoint before the model is built).</summary>
    internal IEnumerable<Checkpoints.ShapeProbe> ShapeProbes()
    {
        var vh = new Checkpoints.ImpliedDim(Vision.HiddenSize, "vision_config.hidden_size");
        var p = new Checkpoints.ImpliedDim(Vision.PatchSize, "vision_config.patch_size");
        var th = new Checkpoints.ImpliedDim(Text.HiddenSize, "text_config.hidden_size");
        var v = new Checkpoints.ImpliedDim(Text.VocabSize, "text_config.vocab_size");
        var pos = new Checkpoints.ImpliedDim(Text.MaxPositionEmbeddings, "text_config.max_position_embeddings");
        var ti = new Checkpoints.ImpliedDim(Text.IntermediateSize, "text_config.intermediate_size");
        yield return new("vision_model.embeddings.patch_embedding.weight", vh, new(3, ""), p, p);
        yield return new("vision_model.embeddings.position_embedding", new(1, ""), new((long)Vision.NumPatches + 1, "vision_config.image_size"), vh);
        yield return new("vision_model.encoder.layers.0.mlp.fc1.weight", new(Vision.IntermediateSize, "vision_config.intermediate_size"), vh);
        foreach (var t in new[] { "text_encoder", "text_decoder.bert" })
        {
            yield return new($"{t}.embeddings.word_embeddings.weight", v, th);
            yield return new($"{t}.embeddings.position_embeddings.weight", pos, th);
            yield return new($"{t}.encoder.layer.0.intermediate.dense.weight", ti, th);
            yield return new($"{t}.encoder.layer.0.crossattention.self.key.weight", th, vh);
        }
        yield return new("text_decoder.cls.predictions.decoder.weight", v, th);
    }

    internal IEnumerable<Checkpoints.LayerProbe> LayerProbes()
    {
        yield return new("vision_config.num_hidden_layers", Vision.NumHiddenLayers, i => $"vision_model.encoder.layers.{i}.mlp.fc1.weight");
        yield return new("text_config.num_hidden_layers", Text.NumHiddenLayers, i => $"text_encoder.encoder.layer.{i}.intermediate.dense.weight");
        yield return new("text_config.num_hidden_layers", Text.NumHiddenLayers, i => $"text_decoder.bert.encoder.layer.{i}.intermediate.dense.weight");
    }

    /// <summary>Writes config.json as transformers' BlipForQuestionAnswering reads it (every field explicit).</summary>
    public void Save(string configFile)
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("BlipForQuestionAnswering"),
            ["model_type"] = "blip",
            ["projection_dim"] = ProjectionDim,
            ["logit_scale_init_value"] = LogitScaleInitValue,
            ["image_text_hidden_size"] = ImageTextHiddenSize,
            ["initializer_factor"] = 1.0,
            ["initializer_range"] = 0.02,
            ["label_smoothing"] = 0.0,
            ["torch_dtype"] = "float32",
            ["transformers_version"] = "4.41.0",
            ["text_config"] = Text.ToJson(),
            ["vision_config"] = Vision.ToJson(),
        };
        File.WriteAllText(configFile, o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>Writes generation_config.json as save_pretrained derives it from this config: generate
    /// starts from [DEC] (bos) and stops on [SEP] (eos).</summary>
    public void SaveGenerationConfig(string path)
    {
        var o = new JsonObject
        {
            ["_from_model_config"] = true,
            ["bos_token_id"] = Text.BosTokenId,
            ["eos_token_id"] = Text.SepTokenId,
            ["pad_token_id"] = Text.PadTokenId,
            ["transformers_version"] = "4.41.0",
        };
        File.WriteAllText(path, o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}

/// <summary>Configurations at known shapes, for benchmarks and for models the project builds itself.</summary>
public static class BlipConfigs
{
    /// <summary>Salesforce/blip-vqa-base: ViT-B/16 at 384, 12-layer BERT-base encoder and decoder.</summary>
    public static BlipConfig VqaBase => new()
    {
        Vision = new BlipVisionConfig { HiddenSize = 768, IntermediateSize = 3072, NumHiddenLayers = 12, NumAttentionHeads = 12, ImageSize = 384, PatchSize = 16 },
        Text = new BlipTextConfig { VocabSize = 30524, HiddenSize = 768, EncoderHiddenSize = 768, IntermediateSize = 3072, NumHiddenLayers = 12, NumAttentionHeads = 12, BosTokenId = 30522, SepTokenId = 102, PadTokenId = 0 },
    };

    /// <summary>A small model for quick checks.</summary>
    public static BlipConfig Small => new()
    {
        Vision = new BlipVisionConfig { HiddenSize = 128, IntermediateSize = 256, NumHiddenLayers = 2, NumAttentionHeads = 4, ImageSize = 64, PatchSize = 8 },
        Text = new BlipTextConfig { VocabSize = 1000, HiddenSize = 128, EncoderHiddenSize = 128, IntermediateSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 4, BosTokenId = 998, SepTokenId = 3, PadTokenId = 0 },
    };
}
