using Notice.Vlm.Checkpoints;
using Notice.Vlm.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>The merged sequence the language model receives.</summary>
/// <param name="InputsEmbeds">[B, Tm, D], Tm = T + N - 1: &lt;image&gt; replaced by the N image features, &lt;pad&gt; rows zero</param>
/// <param name="AttentionMask">[B, Tm] int64, 0 at padding</param>
/// <param name="PositionIds">[B, Tm] int64: cumsum(mask) - 1, and 1 at padding</param>
public sealed record LlavaInputs(Tensor InputsEmbeds, Tensor AttentionMask, Tensor PositionIds);

/// <summary>A greedy generation.</summary>
/// <param name="NewIds">per row, the generated tokens; after its end-of-sequence token a row holds padding</param>
/// <param name="StepLogits">[steps, B, V] float32: the logits each token was chosen from (step 0: the prompt's last position)</param>
public sealed record LlavaGeneration(long[][] NewIds, Tensor StepLogits) : IDisposable
{
    public void Dispose() => StepLogits.Dispose();
}

/// <summary>
/// LlavaForConditionalGeneration (LLaVA-1.5) as transformers 4.41 computes it: the CLIP vision tower
/// runs up to the selected hidden state, the class token is dropped (strategy "default") or kept
/// ("full"), the projector maps the features into the language model's embedding space, and they
/// replace the prompt's single &lt;image&gt; token; the LLaMA decoder then reads the merged sequence.
/// The answer is read at the last position. Hook point "text.embed": the merged inputs_embeds.
/// </summary>
public sealed class LlavaForConditionalGeneration : nn.Module
{
    private static readonly string EmbedHook = HookName.Embed(HookName.Text);
    public LlavaConfig Config { get; }
    public ClipVisionTower VisionTower { get; }
    public LlavaProjector Projector { get; }
    public LlamaForCausalLM LanguageModel { get; }

    /// <summary>A model with freshly initialised weights, its parameters created in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public LlavaForConditionalGeneration(LlavaConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null) : base("llava")
    {
        var at = new Placement(dtype, device ?? torch.CPU);
        Config = config;
        VisionTower = new ClipVisionTower(config.Vision, at);
        Projector = new LlavaProjector(config, at);
        LanguageModel = new LlamaForCausalLM(config.Text, at);
        register_module("vision_tower", VisionTower);
        register_module("multi_modal_projector", Projector);
        register_module("language_model", LanguageModel);
        eval();
    }

    public Device Device => LanguageModel.parameters().First().device;
    public ScalarType DType => LanguageModel.parameters().First().dtype;

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (config.json, model.safetensors or shards with their
    /// index). The model is built in <paramref name="dtype"/> on <paramref name="device"/> and filled
    /// one stored tensor at a time (F32, F16 or BF16 on disk), converted as it is read.
    /// </summary>
    public static LlavaForConditionalGeneration Load(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var configFile = Path.Combine(folder, "config.json");
        var config = LlavaConfig.Load(configFile);
        // The weights are opened (and every shard checked), and their shapes compared with the ones
        // config.json implies, before a possibly large model is built.
        using var store = TensorStore.Open(folder);
        ConfigShapeCheck.Verify(store, configFile, config.ShapeProbes(), config.LayerProbes());
        ConfigShapeCheck.CheckMemory(store, configFile, "text_config.hidden_size", dtype, device);
        var model = ConfigShapeCheck.Allocate(configFile, "text_config.hidden_size", () =>
        {
            using var _ = torch.no_grad();
            return new LlavaForConditionalGeneration(config, dtype, device);
        });
        try
        {
            // Every parameter is stored, post_layernorm included; the rotary tables are not parameters.
            WeightLoader.Load(store, model.StateTensors());
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>Writes config.json and model.safetensors under the names transformers uses.</summary>
    public void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        Config.Save(Path.Combine(folder, "config.json"), TorchDtypeName(DType));
        SafeTensorsFile.Write(Path.Combine(folder, "model.safetensors"), StateTensors(), new Dictionary<string, string> { ["format"] = "pt" });
    }

    private static string TorchDtypeName(ScalarType t) => t switch
    {
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float64 => "float64",
        _ => "float32",
    };

    /// <summary>Every parameter by its checkpoint name.</summary>
    public Dictionary<string, Tensor> StateTensors()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in named_parameters()) d[name] = p;
        return d;
    }

    /// <summary>Image features [B, N, D] of pixel values [B, C, H, W], one image per prompt.</summary>
    public Tensor ImageFeatures(Tensor pixelValues, HookContext? hooks = null)
    {
        // Layers above the selected hidden state do not affect LLaVA's output, so they are not run.
        var selected = VisionTower.Forward(pixelValues, hooks, Config.SelectedHiddenState);
        if (Config.VisionFeatureSelectStrategy == "default") selected = selected.narrow(1, 1, selected.shape[1] - 1);
        return Projector.Forward(selected, hooks);
    }

    /// <summary>
    /// transformers 4.41's _merge_input_ids_with_image_features for prompts with one &lt;image&gt;
    /// each: input token i after the image token sits at merged position i + N - 1. &lt;pad&gt;
    /// positions get zero embeddings (generation later recognises them by it) and keep their mask 0.
    /// </summary>
    /// <param name="inputIds">[B, T], left-padded where rows differ in length</param>
    /// <param name="attentionMask">[B, T]; null: every position attended</param>
    /// <param name="imageFeatures">[B, N, D] from <see cref="ImageFeatures"/>, row b for prompt b</param>
    public LlavaInputs MergeInputs(Tensor inputIds, Tensor? attentionMask, Tensor imageFeatures, HookContext? hooks = null)
    {
        using var scope = torch.NewDisposeScope();
        inputIds = inputIds.to(ScalarType.Int64, Device);
        long b = inputIds.shape[0], t = inputIds.shape[1], n = imageFeatures.shape[1];
        if (imageFeatures.shape[0] != b)
            throw new ArgumentException($"{imageFeatures.shape[0]} images for {b} prompts; each prompt takes one image");
        var mask = attentionMask?.to(ScalarType.Int64, Device) ?? torch.ones_like(inputIds);
        var text = LanguageModel.Model.Embed(inputIds).to(imageFeatures.dtype);
        if (Config.PadTokenId >= 0) text = text.masked_fill(inputIds.eq(Config.PadTokenId).unsqueeze(-1), 0);

        var image = ImageTokenPositions(inputIds);
        var ones = torch.ones(n, dtype: ScalarType.Int64, device: Device);
        var embeds = new Tensor[b];
        var masks = new Tensor[b];
        for (int r = 0; r < b; r++)
        {
            long k = image[r], after = t - k - 1;
            embeds[r] = torch.cat(new[] { text[r].narrow(0, 0, k), imageFeatures[r], text[r].narrow(0, k + 1, after) }, 0);
            masks[r] = torch.cat(new[] { mask[r].narrow(0, 0, k), ones, mask[r].narrow(0, k + 1, after) }, 0);
        }
        var mergedMask = torch.stack(masks);
        var positions = (mergedMask.cumsum(-1) - 1).masked_fill(mergedMask.eq(0), 1);
        var merged = hooks.At(EmbedHook, torch.stack(embeds));
        return new LlavaInputs(merged.MoveToOuterDisposeScope(), mergedMask.MoveToOuterDisposeScope(), positions.MoveToOuterDisposeScope());
    }

    /// <summary>The index of each row's &lt;image&gt; token; a row without one or with several is an error.</summary>
    private long[] ImageTokenPositions(Tensor inputIds)
    {
        using var ids = inputIds.cpu();
        long t = ids.shape[1];
        var flat = ids.data<long>().ToArray();
        var positions = new long[ids.shape[0]];
        for (int r = 0; r < positions.Length; r++)
        {
            var found = Enumerable.Range(0, (int)t).Where(i => flat[r * t + i] == Config.ImageTokenIndex).ToList();
            if (found.Count != 1)
                throw new ArgumentException($"row {r} of input_ids has {found.Count} image tokens (id {Config.ImageTokenIndex}, image_token_index); a LLaVA-1.5 prompt holds exactly one");
            positions[r] = found[0];
        }
        return positions;
    }

    /// <summary>Logits [B, V] (float32) at the last merged position: the answer's first token.</summary>
    public Tensor AnswerLogits(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null, HookContext? hooks = null)
    {
        using var scope = torch.NewDisposeScope();
        var inputs = MergeInputs(inputIds, attentionMask, ImageFeatures(pixelValues, hooks), hooks);
        var output = LanguageModel.Model.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, hooks: hooks);
        return LanguageModel.Logits(output.LastHiddenState.select(1, -1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Greedy generation with a KV cache, as transformers 4.41's generate runs LLaVA: step 0 reads the
    /// merged prompt; each later step feeds the previous token alone. A row stops at the
    /// end-of-sequence token and is padded (pad_token_id) while others go on.
    /// </summary>
    public LlavaGeneration Generate(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null, int maxNewTokens = 20)
    {
        if (maxNewTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), "at least one token");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var lm = LanguageModel.Model;
        var inputs = MergeInputs(inputIds, attentionMask, ImageFeatures(pixelValues));
        var output = lm.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, useCache: true);

        int b = (int)inputIds.shape[0];
        long eos = Config.Text.EosTokenId;
        long pad = Config.PadTokenId >= 0 ? Config.PadTokenId : eos;   // generate's fallback without a pad token
        var rows = Enumerable.Range(0, b).Select(_ => new List<long>()).ToArray();
        var done = new bool[b];
        var steps = new List<Tensor>();
        while (true)
        {
            var logits = LanguageModel.Logits(output.LastHiddenState.select(1, -1));
            steps.Add(logits);
            using var next = logits.argmax(-1).cpu();
            var nextIds = next.data<long>().ToArray();
            for (int r = 0; r < b; r++)
            {
                long id = done[r] ? pad : nextIds[r];
                rows[r].Add(id);
                if (id == eos) done[r] = true;
            }
            if (done.All(d => d) || rows[0].Count == maxNewTokens) break;

            var cache = output.Cache!;
            var mask = StepMask(cache[0]);
            var positionIds = mask.sum(1, keepdim: true) - 1;
            using var ids = torch.tensor(rows.Select(r => r[^1]).ToArray(), dtype: ScalarType.Int64, device: Device).view(b, 1);
            output = lm.Forward(lm.Embed(ids), positionIds, mask, cache, useCache: true);
            foreach (var kv in cache) kv.Dispose();   // superseded by the extended cache
        }
        return new LlavaGeneration(rows.Select(r => r.ToArray()).ToArray(), torch.stack(steps).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The [B, S + 1] mask of a one-token step, rebuilt from the cache as transformers 4.41's LLaVA
    /// does: a cached position whose layer-0 key, channel 0, sums to zero over the heads is taken
    /// for padding (the merge zeroed its embedding, so its key is exactly zero); the new token is attended.
    /// </summary>
    private static Tensor StepMask(KeyValueCache layer0)
    {
        var attended = layer0.Keys.select(-1, 0).to(ScalarType.Float32).sum(1).ne(0).to(ScalarType.Int64);
        var current = torch.ones(attended.shape[0], 1, dtype: ScalarType.Int64, device: attended.device);
        return torch.cat(new[] { attended, current }, 1);
    }
}
