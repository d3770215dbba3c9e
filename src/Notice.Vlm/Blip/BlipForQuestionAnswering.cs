using Notice.Vlm.Checkpoints;
using Notice.Vlm.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Blip;

/// <summary>
/// BlipForQuestionAnswering as transformers 4.41 computes it: the ViT encodes the image; the text
/// encoder reads the question (self-attention with the padding mask, cross-attention to every
/// image token); the decoder starts from [DEC] and cross-attends to every question position (HF's
/// generate passes an all-ones mask there, padding included). The answer token is the decoder's
/// first step.
/// </summary>
public sealed class BlipForQuestionAnswering : nn.Module
{
    public BlipConfig Config { get; }
    public BlipVisionModel Vision { get; }
    public BlipTextModel TextEncoder { get; }
    public BlipTextDecoder TextDecoder { get; }

    public BlipForQuestionAnswering(BlipConfig config) : base("blip")
    {
        Config = config;
        Vision = new BlipVisionModel(config.Vision);
        TextEncoder = new BlipTextModel(config.Text, "text_encoder", HookName.Text);
        TextDecoder = new BlipTextDecoder(config.Text);
        register_module("vision_model", Vision);
        register_module("text_encoder", TextEncoder);
        register_module("text_decoder", TextDecoder);
        eval();
    }

    public Device Device => Vision.parameters().First().device;
    public ScalarType DType => Vision.parameters().First().dtype;

    /// <summary>Loads a Hugging Face checkpoint folder (config.json + model.safetensors or shards).</summary>
    public static BlipForQuestionAnswering Load(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var configFile = Path.Combine(folder, "config.json");
        var config = BlipConfig.Load(configFile);
        // The weights are opened, and their shapes compared with the ones config.json implies, before
        // the model is built: a config that disagrees with them allocates nothing.
        using var store = TensorStore.Open(folder);
        ConfigShapeCheck.Verify(store, configFile, config.ShapeProbes(), config.LayerProbes());
        // The model is built in float32 and then converted.
        var widest = dtype == ScalarType.Float64 ? dtype : ScalarType.Float32;
        ConfigShapeCheck.CheckMemory(store, configFile, "text_config.hidden_size", widest, device: null);
        var model = ConfigShapeCheck.Allocate(configFile, "text_config.hidden_size", () =>
        {
            using var _ = torch.no_grad();
            var m = new BlipForQuestionAnswering(config);
            if (dtype != ScalarType.Float32) m.to(dtype);
            return m;
        });
        try
        {
            // text_decoder.cls.predictions.decoder.bias is tied to ...predictions.bias and not stored.
            WeightLoader.Load(store, model.StateTensors(),
                ignored: n => n == "text_decoder.cls.predictions.decoder.bias" || n.EndsWith(".position_ids", StringComparison.Ordinal));
            if (device is not null && device.type != DeviceType.CPU)
                ConfigShapeCheck.Allocate(configFile, "text_config.hidden_size", () => model.to(device));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>Writes config.json, generation_config.json and model.safetensors under the names transformers uses.</summary>
    public void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        Config.Save(Path.Combine(folder, "config.json"));
        Config.SaveGenerationConfig(Path.Combine(folder, "generation_config.json"));
        SafeTensorsFile.Write(Path.Combine(folder, "model.safetensors"), StateTensors(), new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Every parameter and buffer by its checkpoint name.</summary>
    public Dictionary<string, Tensor> StateTensors()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in named_parameters()) d[name] = p;
        return d;
    }

    /// <summary>Image embeddings [B, 1+P, D].</summary>
    public Tensor EncodeImage(Tensor pixelValues, HookContext? hooks = null) =>
        Vision.Forward(pixelValues.to(DType, Device), hooks);

    /// <summary>
    /// Question embeddings [B, T, D] (the text encoder's last hidden state). <paramref name="attentionMask"/>
    /// null means every position is attended ([PAD] included), as the original NOTICE code runs it.
    /// </summary>
    public Tensor EncodeQuestion(Tensor inputIds, Tensor? attentionMask, IReadOnlyList<CrossKeyValues> imageKv, HookContext? hooks = null)
    {
        inputIds = inputIds.to(Device);
        using var mask = attentionMask is null ? null : BlipTextModel.PaddingMask(attentionMask.to(Device), DType);
        var h = TextEncoder.Embed(inputIds, hooks);
        return TextEncoder.Forward(h, mask, imageKv, hooks);
    }

    /// <summary>Decoder logits [B, V] of the first answer step (input: [DEC] alone).</summary>
    public Tensor FirstStepLogits(Tensor questionEmbeds, HookContext? hooks = null)
    {
        long b = questionEmbeds.shape[0];
        using var dec = torch.full(b, 1, Config.Text.BosTokenId, dtype: ScalarType.Int64, device: Device);
        using var logits = TextDecoder.Logits(dec, questionEmbeds, hooks);
        return logits.select(1, 0);
    }

    /// <summary>Whole forward: first-step answer logits [B, V].</summary>
    public Tensor AnswerLogits(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask, HookContext? hooks = null)
    {
        using var scope = torch.NewDisposeScope();
        var image = EncodeImage(pixelValues, hooks);
        var kv = TextEncoder.CrossKeysValues(image);
        var q = EncodeQuestion(inputIds, attentionMask, kv, hooks);
        return FirstStepLogits(q, hooks).MoveToOuterDisposeScope();
    }

    /// <summary>Greedy answer ids per row, [DEC] first, ending with [SEP] where generation stopped on it
    /// (transformers' generate with max_length 20).</summary>
    public long[][] Generate(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask, int maxLength = 20)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var image = EncodeImage(pixelValues);
        var kv = TextEncoder.CrossKeysValues(image);
        var q = EncodeQuestion(inputIds, attentionMask, kv);
        long b = q.shape[0];
        var rows = Enumerable.Range(0, (int)b).Select(_ => new List<long> { Config.Text.BosTokenId }).ToArray();
        var done = new bool[b];
        var qkv = TextDecoder.Bert.CrossKeysValues(q);
        for (int step = 1; step < maxLength && !done.All(d => d); step++)
        {
            using var ids = torch.tensor(rows.SelectMany(r => r).ToArray(), dtype: ScalarType.Int64, device: Device).view(b, -1);
            using var logits = TextDecoder.Logits(ids, q, null, qkv);
            using var next = logits.select(1, -1).argmax(-1).cpu();
            var nextIds = next.data<long>().ToArray();
            for (int i = 0; i < b; i++)
            {
                // Finished rows are padded, as generate pads them, so every row keeps one length.
                rows[i].Add(done[i] ? Config.Text.PadTokenId : nextIds[i]);
                if (nextIds[i] == Config.Text.SepTokenId) done[i] = true;
            }
        }
        return rows.Select(r => r.ToArray()).ToArray();
    }
}

/// <summary>BlipTextLMHeadModel: a causal BERT ("bert") and the prediction head ("cls.predictions").</summary>
public sealed class BlipTextDecoder : nn.Module
{
    private readonly Linear _transform;
    private readonly LayerNorm _transformNorm;
    private readonly Linear _decoder;
    private readonly Predictions _predictions;
    private readonly string _act;

    public BlipTextModel Bert { get; }

    public BlipTextDecoder(BlipTextConfig c) : base("text_decoder")
    {
        Bert = new BlipTextModel(c, "bert", HookName.Decoder);
        _transform = nn.Linear(c.HiddenSize, c.HiddenSize);
        _transformNorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        _decoder = nn.Linear(c.HiddenSize, c.VocabSize, hasBias: false);
        // The bias lives in the head module only: a Parameter field here would be registered twice.
        _predictions = new Predictions(_transform, _transformNorm, _decoder, new Parameter(torch.zeros(c.VocabSize)));
        _act = c.HiddenAct;
        register_module("bert", Bert);
        register_module("cls", new Cls(_predictions));
    }

    /// <summary>Logits [B, T, V] for decoder inputs <paramref name="ids"/> attending causally to
    /// themselves and fully to <paramref name="questionEmbeds"/>.</summary>
    public Tensor Logits(Tensor ids, Tensor questionEmbeds, HookContext? hooks, IReadOnlyList<CrossKeyValues>? questionKv = null)
    {
        using var scope = torch.NewDisposeScope();
        var kv = questionKv ?? Bert.CrossKeysValues(questionEmbeds);
        var h = Bert.Embed(ids, hooks);
        var mask = ids.shape[1] > 1 ? BlipTextModel.CausalMask(ids.shape[1], h.dtype, h.device) : null;
        h = Bert.Forward(h, mask, kv, hooks);
        h = _transformNorm.forward(Activations.Apply(_act, _transform.forward(h)));
        return (_decoder.forward(h) + _predictions.Bias).MoveToOuterDisposeScope();
    }

    private sealed class Cls : nn.Module
    {
        public Cls(Predictions predictions) : base("cls") => register_module("predictions", predictions);
    }

    private sealed class Predictions : nn.Module
    {
        /// <summary>The registered bias (converting the module, m.to(dtype), replaces the parameter object).</summary>
        public Parameter Bias => get_parameter("bias")!;

        public Predictions(Linear transform, LayerNorm norm, Linear decoder, Parameter bias) : base("predictions")
        {
            register_module("transform", new Transform(transform, norm));
            register_module("decoder", decoder);
            register_parameter("bias", bias);
        }
    }

    private sealed class Transform : nn.Module
    {
        public Transform(Linear dense, LayerNorm norm) : base("transform")
        {
            register_module("dense", dense);
            register_module("LayerNorm", norm);
        }
    }
}
