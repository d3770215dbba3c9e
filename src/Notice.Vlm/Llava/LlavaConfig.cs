using System.Text.Json.Nodes;
using Notice.Vlm.Blip;
using Notice.Vlm.Config;

namespace Notice.Vlm.Llava;

/// <summary>CLIPVisionConfig (model_type "clip_vision_model"), with transformers 4.41's defaults for omitted fields.</summary>
public sealed record ClipVisionConfig
{
    public int HiddenSize { get; init; } = 768;
    public int IntermediateSize { get; init; } = 3072;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public int NumChannels { get; init; } = 3;
    public int ImageSize { get; init; } = 224;
    public int PatchSize { get; init; } = 32;
    public string HiddenAct { get; init; } = "quick_gelu";
    public double LayerNormEps { get; init; } = 1e-5;
    public int ProjectionDim { get; init; } = 512;
    public double InitializerRange { get; init; } = 0.02;

    public int HeadDim => HiddenSize / NumAttentionHeads;
    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);
    /// <summary>Tokens per image: the class token and the patches.</summary>
    public int NumPositions => NumPatches + 1;

    /// <summary>The vision config LlavaConfig builds when config.json has no vision_config: CLIP ViT-L/14 at 336.</summary>
    public static ClipVisionConfig LlavaDefault => new()
    {
        HiddenSize = 1024, IntermediateSize = 4096, NumHiddenLayers = 24, NumAttentionHeads = 16,
        ImageSize = 336, PatchSize = 14, ProjectionDim = 768,
    };

    internal static ClipVisionConfig Read(JsonConfig c) => new()
    {
        HiddenSize = c.Size("hidden_size", 768, 1, ConfigLimits.HiddenSize),
        IntermediateSize = c.Size("intermediate_size", 3072, 1, ConfigLimits.IntermediateSize),
        NumHiddenLayers = c.Size("num_hidden_layers", 12, 1, ConfigLimits.Layers),
        NumAttentionHeads = c.Size("num_attention_heads", 12, 1, ConfigLimits.Heads),
        NumChannels = c.Size("num_channels", 3, ConfigLimits.Channels, ConfigLimits.Channels),
        ImageSize = c.Size("image_size", 224, 1, ConfigLimits.ImageSize),
        PatchSize = c.Size("patch_size", 32, 1, ConfigLimits.PatchSize),
        HiddenAct = c.String("hidden_act", "quick_gelu"),
        LayerNormEps = c.Double("layer_norm_eps", 1e-5),
        ProjectionDim = c.Int("projection_dim", 512),
        InitializerRange = c.Double("initializer_range", 0.02),
    };

    internal JsonObject ToJson() => new()
    {
        ["model_type"] = "clip_vision_model",
        ["hidden_size"] = HiddenSize,
        ["intermediate_size"] = IntermediateSize,
        ["num_hidden_layers"] = NumHiddenLayers,
        ["num_attention_heads"] = NumAttentionHeads,
        ["num_channels"] = NumChannels,
        ["image_size"] = ImageSize,
        ["patch_size"] = PatchSize,
        ["hidden_act"] = HiddenAct,
        ["layer_norm_eps"] = LayerNormEps,
        ["projection_dim"] = ProjectionDim,
        ["initializer_range"] = InitializerRange,
    };
}

/// <summary>LlamaConfig (model_type "llama"), with transformers 4.41's defaults for omitted fields.</summary>
public sealed record LlamaConfig
{
    public int VocabSize { get; init; } = 32000;
    public int HiddenSize { get; init; } = 4096;
    public int IntermediateSize { get; init; } = 11008;
    public int NumHiddenLayers { get; init; } = 32;
    public int NumAttentionHeads { get; init; } = 32;
    /// <summary>Key/value heads; fewer than <see cref="NumAttentionHeads"/> means grouped-query attention.</summary>
    public int NumKeyValueHeads { get; init; } = 32;
    public string HiddenAct { get; init; } = "silu";
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000.0;
    public bool AttentionBias { get; init; }
    public bool MlpBias { get; init; }
    public int BosTokenId { get; init; } = 1;
    public int EosTokenId { get; init; } = 2;
    public double InitializerRange { get; init; } = 0.02;

    public int HeadDim => HiddenSize / NumAttentionHeads;

    internal static LlamaConfig Read(JsonConfig c)
    {
        int heads = c.Size("num_attention_heads", 32, 1, ConfigLimits.Heads);
        return new LlamaConfig
        {
            VocabSize = c.Size("vocab_size", 32000, 1, ConfigLimits.VocabSize),
            HiddenSize = c.Size("hidden_size", 4096, 1, ConfigLimits.HiddenSize),
            IntermediateSize = c.Size("intermediate_size", 11008, 1, ConfigLimits.IntermediateSize),
            NumHiddenLayers = c.Size("num_hidden_layers", 32, 1, ConfigLimits.Layers),
            NumAttentionHeads = heads,
            // LlamaConfig: num_key_value_heads None means one key/value head per attention head.
            NumKeyValueHeads = c.Size("num_key_value_heads", heads, 1, ConfigLimits.Heads),
            HiddenAct = c.String("hidden_act", "silu"),
            MaxPositionEmbeddings = c.Size("max_position_embeddings", 2048, 1, ConfigLimits.Positions),
            RmsNormEps = c.Double("rms_norm_eps", 1e-6),
            RopeTheta = c.Double("rope_theta", 10000.0),
            AttentionBias = c.Bool("attention_bias", false),
            MlpBias = c.Bool("mlp_bias", false),
            BosTokenId = c.Int("bos_token_id", 1),
            EosTokenId = c.Int("eos_token_id", 2),
            InitializerRange = c.Double("initializer_range", 0.02),
        };
    }

    internal JsonObject ToJson() => new()
    {
        ["model_type"] = "llama",
        ["vocab_size"] = VocabSize,
        ["hidden_size"] = HiddenSize,
        ["intermediate_size"] = IntermediateSize,
        ["num_hidden_layers"] = NumHiddenLayers,
        ["num_attention_heads"] = NumAttentionHeads,
        ["num_key_value_heads"] = NumKeyValueHeads,
        ["hidden_act"] = HiddenAct,
        ["max_position_embeddings"] = MaxPositionEmbeddings,
        ["rms_norm_eps"] = RmsNormEps,
        ["rope_theta"] = RopeTheta,
        ["rope_scaling"] = null,
        ["attention_bias"] = AttentionBias,
        ["mlp_bias"] = MlpBias,
        ["bos_token_id"] = BosTokenId,
        ["eos_token_id"] = EosTokenId,
        ["initializer_range"] = InitializerRange,
        ["tie_word_embeddings"] = false,
    };
}

/// <summary>LlavaConfig (model_type "llava") as LlavaForConditionalGeneration reads it.</summary>
public sealed record LlavaConfig
{
    public required ClipVisionConfig Vision { get; init; }
    public required LlamaConfig Text { get; init; }
    /// <summary>The id of &lt;image&gt;, the placeholder replaced by the image features.</summary>
    public int ImageTokenIndex { get; init; } = 32000;
    /// <summary>The id of &lt;pad&gt;, whose positions get zero embeddings; -1 when there is none
    /// (LlavaForConditionalGeneration's fallback for a null pad_token_id).</summary>
    public int PadTokenId { get; init; } = -1;
    public string ProjectorHiddenAct { get; init; } = "gelu";
    /// <summary>Index into the vision tower's hidden states (0 = the pre_layrnorm output, negative from the end).</summary>
    public int VisionFeatureLayer { get; init; } = -2;
    /// <summary>"default" drops the class token from the image features, "full" keeps it.</summary>
    public string VisionFeatureSelectStrategy { get; init; } = "default";

    /// <summary><see cref="VisionFeatureLayer"/> as a non-negative index into the L+1 hidden states.</summary>
    public int SelectedHiddenState => VisionFeatureLayer >= 0 ? VisionFeatureLayer : Vision.NumHiddenLayers + 1 + VisionFeatureLayer;

    /// <summary>How many rows each image contributes to the merged sequence.</summary>
    public int NumImageFeatures => VisionFeatureSelectStrategy == "full" ? Vision.NumPositions : Vision.NumPatches;

    public static LlavaConfig Load(string configFile)
    {
        var c = JsonConfig.Load(configFile);
        var modelType = c.String("model_type", "");
        if (modelType != "llava")
            throw c.Error("model_type", $"expected \"llava\" (LlavaForConditionalGeneration), found \"{modelType}\"");
        var cfg = new LlavaConfig
        {
            Vision = c.Has("vision_config") ? ClipVisionConfig.Read(SubConfig(c, "vision_config", "clip_vision_model")) : ClipVisionConfig.LlavaDefault,
            Text = LlamaConfig.Read(SubConfig(c, "text_config", "llama")),
            ImageTokenIndex = c.Int("image_token_index", 32000),
            PadTokenId = c.Int("pad_token_id", -1),
            ProjectorHiddenAct = c.String("projector_hidden_act", "gelu"),
            VisionFeatureLayer = c.Int("vision_feature_layer", -2),
            VisionFeatureSelectStrategy = c.String("vision_feature_select_strategy", "default"),
        };
        cfg.Validate(c);
        return cfg;
    }

    /// <summary>A sub-config whose model_type (when given) must be the one this port implements.</summary>
    private static JsonConfig SubConfig(JsonConfig c, string name, string modelType)
    {
        var section = c.Section(name);
        var found = section.String("model_type", modelType);
        if (found != modelType)
            throw section.Error("model_type", $"expected \"{modelType}\", found \"{found}\"");
        return section;
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
        if (Vision.ImageSize % Vision.PatchSize != 0)
            throw c.Error("vision_config.patch_size", $"image_size {Vision.ImageSize} is not a multiple of patch_size {Vision.PatchSize}");
        if (Text.HiddenSize % Text.NumAttentionHeads != 0)
            throw c.Error("text_config.num_attention_heads", $"hidden_size {Text.HiddenSize} is not a multiple of {Text.NumAttentionHeads} heads");
        if (Text.NumKeyValueHeads > Text.NumAttentionHeads || Text.NumAttentionHeads % Text.NumKeyValueHeads != 0)
            throw c.Error("text_config.num_key_value_heads", $"{Text.NumAttentionHeads} attention heads cannot be shared evenly by {Text.NumKeyValueHeads} key/value heads");
        if (Text.HeadDim % 2 != 0)
            throw c.Error("text_config.num_attention_heads", $"rotary embeddings need an even head size, found {Text.HeadDim}");
        if (!(Text.RopeTheta > 0) || double.IsInfinity(Text.RopeTheta))
            throw c.Error("text_config.rope_theta", $"must be a positive number, found {Text.RopeTheta}");
        var text = c.Section("text_config");
        if (text.Has("rope_scaling"))
            throw text.Error("rope_scaling", "scaled rotary embeddings are not supported");
        if (text.Bool("tie_word_embeddings", false))
            throw text.Error("tie_word_embeddings", "a language model head tied to the embeddings is not supported");
        if (ImageTokenIndex < 0 || ImageTokenIndex >= Text.VocabSize)
            throw c.Error("image_token_index", $"{ImageTokenIndex} is outside the language model's vocabulary (text_config.vocab_size {Text.VocabSize})");
        foreach (var (name, id) in new[] { ("text_config.bos_token_id", Text.BosTokenId), ("text_config.eos_token_id", Text.EosTokenId) })
            if (id < 0 || id >= Text.VocabSize)
                throw c.Error(name, $"{id} is outside the language model's vocabulary (text_config.vocab_size {Text.VocabSize})");
        if (PadTokenId < -1 || PadTokenId >= Text.VocabSize)
            throw c.Error("pad_token_id", $"{PadTokenId} is outside the language model's vocabulary (text_config.vocab_size {Text.VocabSize})");
        int states = Vision.NumHiddenLayers + 1;
        if (VisionFeatureLayer < -states || VisionFeatureLayer >= states)
            throw c.Error("vision_feature_layer", $"{VisionFeatureLayer} does not name one of the vision tower's {states} hidden states");
        if (VisionFeatureSelectStrategy is not ("default" or "full"))
            throw c.Error("vision_feature_select_strategy", $"expected \"default\" or \"full\", found \"{VisionFeatureSelectStrategy}\"");
        foreach (var (name, act) in new[] { ("vision_config.hidden_act", Vision.HiddenAct), ("text_config.hidden_act", Text.HiddenAct), ("projector_hidden_act", ProjectorHiddenAct) })
            if (!Activations.Supports(act))
                throw c.Error(name, $"unsupported activation \"{act}\"");
    }

    /// <summary>Stored tensors whose shapes follow from the size fields, each dimension with the field
    /// it comes from (checked against the checkpoint before the model is built).</summary>
    internal IEnumerable<Checkpoints.ShapeProbe> ShapeProbes()
    {
        const string tower = "vision_tower.vision_model";
        var vh = new Checkpoints.ImpliedDim(Vision.HiddenSize, "vision_config.hidden_size");
        var p = new Checkpoints.ImpliedDim(Vision.PatchSize, "vision_config.patch_size");
        var th = new Checkpoints.ImpliedDim(Text.HiddenSize, "text_config.hidden_size");
        var v = new Checkpoints.ImpliedDim(Text.VocabSize, "text_config.vocab_size");
        yield return new($"{tower}.embeddings.patch_embedding.weight", vh, new(Vision.NumChannels, "vision_config.num_channels"), p, p);
        yield return new($"{tower}.embeddings.position_embedding.weight", new((long)Vision.NumPositions, "vision_config.image_size"), vh);
        yield return new($"{tower}.encoder.layers.0.mlp.fc1.weight", new(Vision.IntermediateSize, "vision_config.intermediate_size"), vh);
        yield return new("multi_modal_projector.linear_1.weight", th, vh);
        yield return new("multi_modal_projector.linear_2.weight", th, th);
        yield return new("language_model.model.embed_tokens.weight", v, th);
        yield return new("language_model.lm_head.weight", v, th);
        yield return new("language_model.model.layers.0.mlp.gate_proj.weight", new(Text.IntermediateSize, "text_config.intermediate_size"), th);
        yield return new("language_model.model.layers.0.self_attn.q_proj.weight", th, th);
        yield return new("language_model.model.layers.0.self_attn.k_proj.weight", new((long)Text.NumKeyValueHeads * Text.HeadDim, "text_config.num_key_value_heads"), th);
    }

    internal IEnumerable<Checkpoints.LayerProbe> LayerProbes()
    {
        yield return new("vision_config.num_hidden_layers", Vision.NumHiddenLayers, i => $"vision_tower.vision_model.encoder.layers.{i}.mlp.fc1.weight");
        yield return new("text_config.num_hidden_layers", Text.NumHiddenLayers, i => $"language_model.model.layers.{i}.mlp.gate_proj.weight");
    }

    /// <summary>Writes config.json as transformers' LlavaForConditionalGeneration reads it (every field
    /// explicit); <paramref name="torchDtype"/> records the stored weights' dtype ("float16", ...).</summary>
    public void Save(string configFile, string torchDtype = "float32")
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("LlavaForConditionalGeneration"),
            ["model_type"] = "llava",
            ["image_token_index"] = ImageTokenIndex,
            ["pad_token_id"] = PadTokenId < 0 ? null : PadTokenId,
            ["projector_hidden_act"] = ProjectorHiddenAct,
            ["vision_feature_layer"] = VisionFeatureLayer,
            ["vision_feature_select_strategy"] = VisionFeatureSelectStrategy,
            ["ignore_index"] = -100,
            ["tie_word_embeddings"] = false,
            ["torch_dtype"] = torchDtype,
            ["transformers_version"] = "4.41.0",
            ["text_config"] = Text.ToJson(),
            ["vision_config"] = Vision.ToJson(),
        };
        File.WriteAllText(configFile, o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}

/// <summary>LLaVA shapes for benchmarks and load tests (random weights).</summary>
public static class LlavaConfigs
{
    /// <summary>llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 (576 image features), LLaMA-7B (32 layers,
    /// 32 heads, hidden 4096, MLP 11008), 32064 vocabulary rows.</summary>
    public static LlavaConfig Llava15_7B => At7BWidths(32, 24);

    /// <summary>llava-1.5-7b's widths with fewer decoder and vision-tower layers.</summary>
    public static LlavaConfig At7BWidths(int textLayers, int visionLayers) => new()
    {
        Vision = ClipVisionConfig.LlavaDefault with { NumHiddenLayers = visionLayers },
        Text = new LlamaConfig { VocabSize = 32064, NumHiddenLayers = textLayers, MaxPositionEmbeddings = 4096, RmsNormEps = 1e-5 },
        ImageTokenIndex = 32000,
        PadTokenId = 32001,
    };

    /// <summary>A small model for quick checks.</summary>
    public static LlavaConfig Small => new()
    {
        Vision = new ClipVisionConfig { HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, ImageSize = 64, PatchSize = 8 },
        Text = new LlamaConfig { VocabSize = 512, HiddenSize = 128, IntermediateSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 8, MaxPositionEmbeddings = 512, RmsNormEps = 1e-5 },
        ImageTokenIndex = 500,
        PadTokenId = 501,
    };
}
