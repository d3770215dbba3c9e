using Notice.Vlm.Checkpoints;
using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>The merged sequence the language model receives.</summary>
/// <param name="InputsEmbeds">[B, T, D]: embed_tokens(input_ids), the &lt;|image_pad|&gt; rows replaced by the image features in order</param>
/// <param name="AttentionMask">[B, T] int64, 0 at padding</param>
/// <param name="PositionIds">[3, B, T] int64 M-RoPE positions (get_rope_index)</param>
/// <param name="RopeDeltas">[B, 1] int64: max position + 1 - T</param>
public sealed record QwenInputs(Tensor InputsEmbeds, Tensor AttentionMask, Tensor PositionIds, Tensor RopeDeltas);

/// <summary>A greedy generation.</summary>
/// <param name="NewIds">per row, the generated tokens; after its end-of-sequence token a row holds padding</param>
/// <param name="StepLogits">[steps, B, V] float32: the raw logits each token was chosen from (step 0: the prompt's last position)</param>
public sealed record QwenGeneration(long[][] NewIds, Tensor StepLogits) : IDisposable
{
    public void Dispose() => StepLogits.Dispose();
}

/// <summary>
/// Qwen2_5_VLForConditionalGeneration as transformers 4.49 computes it: the vision tower turns
/// pixel_values into image features, which replace the &lt;|image_pad|&gt; tokens' embeddings in
/// order; the Qwen2 decoder reads the merged sequence with M-RoPE positions from get_rope_index;
/// the LM head is the embedding matrix when tie_word_embeddings, else lm_head. The answer is read
/// at the last position. Hook point "text.embed": the merged inputs_embeds.
/// </summary>
public sealed class Qwen25VlForConditionalGeneration : nn.Module
{
    private readonly TorchSharp.Modules.Linear? _lmHead;

    public QwenConfig Config { get; }
    public QwenVisionTower Visual { get; }
    /// <summary>The Qwen2 decoder: <see cref="LlamaModel"/> with q/k/v biases and M-RoPE, position ids [3, B, T].</summary>
    public LlamaModel Model { get; }
    /// <summary>Tokens that end a generated row (generation_config.json's eos_token_id; config.json's without it).</summary>
    public long[] EosTokenIds { get; set; }
    /// <summary>The token a finished row is padded with (generation_config.json's pad_token_id; the first eos without it).</summary>
    public long PadTokenId { get; set; }

    /// <summary>A model with freshly initialised weights, its parameters created in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public Qwen25VlForConditionalGeneration(QwenConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null) : base("qwen2_5_vl")
    {
        var at = new Placement(dtype, device ?? torch.CPU);
        Config = config;
        Visual = new QwenVisionTower(config.Vision, at);
        Model = new LlamaModel(Decoder(config), (ids, dtype) => MultimodalRope.Angles(ids, config.HeadDim, config.RopeTheta, config.MropeSection, dtype), at);
        register_module("visual", Visual);
        register_module("model", Model);
        if (!config.TieWordEmbeddings)
        {
            _lmHead = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device: at.Device, dtype: at.DType);
            register_module("lm_head", _lmHead);
        }
        EosTokenIds = [config.EosTokenId];
        PadTokenId = config.EosTokenId;
        eval();
    }

    /// <summary>Qwen2's decoder: biases on q, k and v, none on o_proj or the MLP.</summary>
    private static DecoderConfig Decoder(QwenConfig c) => new(c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers,
        c.NumAttentionHeads, c.NumKeyValueHeads, c.HiddenAct, c.RmsNormEps, QkvBias: true, OutBias: false, MlpBias: false);

    public Device Device => Model.parameters().First().device;
    public ScalarType DType => Model.parameters().First().dtype;

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (config.json, model.safetensors or shards with their
    /// index, generation_config.json if present). The model is built in <paramref name="dtype"/> on
    /// <paramref name="device"/> and filled one stored tensor at a time (F32, F16 or BF16 on disk).
    /// </summary>
    public static Qwen25VlForConditionalGeneration Load(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var config = QwenConfig.Load(Path.Combine(folder, "config.json"));
        var generation = QwenGenerationConfig.Load(folder, config);
        using var store = TensorStore.Open(folder);
        Qwen25VlForConditionalGeneration model;
        using (torch.no_grad()) model = new Qwen25VlForConditionalGeneration(config, dtype, device);
        try
        {
            // A tied head is the embedding matrix; a stored lm_head.weight is then unused, as in transformers.
            WeightLoader.Load(store, CheckpointNames(store, model.StateTensors()), ignored: n => config.TieWordEmbeddings && n == "lm_head.weight");
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.EosTokenIds = generation.EosTokenIds;
        model.PadTokenId = generation.PadTokenId;
        return model;
    }

    /// <summary>
    /// The parameters under the names the checkpoint uses: transformers 4.49 (and the hub's
    /// checkpoints) write visual.* and model.*; 4.52+ saves model.visual.* and model.language_model.*.
    /// </summary>
    private static Dictionary<string, Tensor> CheckpointNames(TensorStore store, Dictionary<string, Tensor> state)
    {
        if (!store.Contains("model.visual.patch_embed.proj.weight")) return state;
        static string Renamed(string name) =>
            name.StartsWith("visual.", StringComparison.Ordinal) ? "model." + name
            : name.StartsWith("model.", StringComparison.Ordinal) ? "model.language_model." + name["model.".Length..]
            : name;
        return state.ToDictionary(kv => Renamed(kv.Key), kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>Every parameter by its checkpoint name (transformers 4.49's names).</summary>
    public Dictionary<string, Tensor> StateTensors()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in named_parameters()) d[name] = p;
        return d;
    }

    /// <summary>Logits over every vocabulary row of final-normed hidden states, in float32 (as transformers returns them).</summary>
    public Tensor Logits(Tensor lastHiddenState) =>
        (_lmHead is null ? nn.functional.linear(lastHiddenState, Model.EmbeddingWeight) : _lmHead.forward(lastHiddenState)).to(ScalarType.Float32);

    /// <summary>Image features [sum of image tokens, D] of pixel_values [N, C*T*P*P] with their grids [images, 3].</summary>
    public Tensor ImageFeatures(Tensor pixelValues, Tensor gridThw, HookContext? hooks = null) => Visual.Forward(pixelValues, gridThw, hooks);

    /// <summary>
    /// The language model's inputs: embed_tokens(input_ids) with the &lt;|image_pad|&gt; rows replaced
    /// by <paramref name="imageFeatures"/> in order (masked_scatter; the counts must match), and the
    /// 3D positions of get_rope_index. &lt;|vision_start|&gt;/&lt;|vision_end|&gt; stay ordinary tokens.
    /// </summary>
    /// <param name="inputIds">[B, T], left-padded where rows differ in length</param>
    /// <param name="attentionMask">[B, T]; null: every position attended</param>
    /// <param name="imageFeatures">[sum of image tokens, D] of every image of the batch, in order</param>
    /// <param name="gridThw">[images, 3] the images' grids, in order</param>
    public QwenInputs MergeInputs(Tensor inputIds, Tensor? attentionMask, Tensor imageFeatures, Tensor gridThw, HookContext? hooks = null)
    {
        using var scope = torch.NewDisposeScope();
        inputIds = inputIds.to(ScalarType.Int64, Device);
        var mask = attentionMask?.to(ScalarType.Int64, Device) ?? torch.ones_like(inputIds);
        var embeds = Model.Embed(inputIds);
        var isImage = inputIds.eq(Config.ImageTokenId);
        long tokens = isImage.sum().item<long>();
        if (tokens != imageFeatures.shape[0])
            throw new ArgumentException($"input_ids hold {tokens} <|image_pad|> tokens (id {Config.ImageTokenId}, image_token_id), but the images give {imageFeatures.shape[0]} features");
        var merged = embeds.masked_scatter(isImage.unsqueeze(-1).expand_as(embeds), imageFeatures.to(embeds.dtype, embeds.device));
        merged = hooks.At(HookName.Embed(), merged);
        var positions = MultimodalRope.RopeIndex(inputIds, gridThw, mask, Config);
        return new QwenInputs(merged.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope(),
            positions.PositionIds.MoveToOuterDisposeScope(), positions.RopeDeltas.MoveToOuterDisposeScope());
    }

    /// <summary>The merged inputs of a processed batch: vision tower, then <see cref="MergeInputs"/>.</summary>
    public QwenInputs PrepareInputs(Tensor pixelValues, Tensor gridThw, Tensor inputIds, Tensor? attentionMask = null, HookContext? hooks = null)
    {
        using var scope = torch.NewDisposeScope();
        var inputs = MergeInputs(inputIds, attentionMask, ImageFeatures(pixelValues, gridThw, hooks), gridThw, hooks);
        inputs.InputsEmbeds.MoveToOuterDisposeScope();
        inputs.AttentionMask.MoveToOuterDisposeScope();
        inputs.PositionIds.MoveToOuterDisposeScope();
        inputs.RopeDeltas.MoveToOuterDisposeScope();
        return inputs;
    }

    /// <summary>Logits [B, V] (float32) at the last position: the answer's first token.</summary>
    public Tensor AnswerLogits(Tensor pixelValues, Tensor gridThw, Tensor inputIds, Tensor? attentionMask = null, HookContext? hooks = null)
    {
        using var scope = torch.NewDisposeScope();
        var inputs = PrepareInputs(pixelValues, gridThw, inputIds, attentionMask, hooks);
        var output = Model.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, hooks: hooks);
        return Logits(output.LastHiddenState.select(1, -1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Greedy generation with a KV cache, as transformers 4.49's generate runs Qwen2.5-VL: step 0
    /// reads the merged prompt; each later step feeds the previous token alone at position
    /// T + k + rope_delta (all three axes), the attention mask extended by one. A row stops at an
    /// end-of-sequence token and is padded while others go on. With <paramref name="minNewTokens"/>
    /// the end-of-sequence tokens are excluded (set to -inf) before the first minNewTokens choices;
    /// StepLogits keeps the raw logits.
    /// </summary>
    public QwenGeneration Generate(Tensor pixelValues, Tensor gridThw, Tensor inputIds, Tensor? attentionMask = null, int maxNewTokens = 20, int minNewTokens = 0)
    {
        if (maxNewTokens < 1) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), "at least one token");
        return Decode(pixelValues, gridThw, inputIds, attentionMask, maxNewTokens, minNewTokens, forced: null);
    }

    /// <summary>
    /// The logits of every step of a generation that feeds the given tokens (teacher forcing):
    /// step k's logits are those generate would see after the first k tokens of
    /// <paramref name="newIds"/>. For comparing step logits where greedy choices are too close to call.
    /// </summary>
    public QwenGeneration TeacherForced(Tensor pixelValues, Tensor gridThw, Tensor inputIds, Tensor? attentionMask, long[][] newIds)
    {
        if (newIds.Length != inputIds.shape[0] || newIds.Any(r => r.Length != newIds[0].Length) || newIds[0].Length == 0)
            throw new ArgumentException("one non-empty row of new ids per prompt, all of one length", nameof(newIds));
        return Decode(pixelValues, gridThw, inputIds, attentionMask, newIds[0].Length, 0, newIds);
    }

    private QwenGeneration Decode(Tensor pixelValues, Tensor gridThw, Tensor inputIds, Tensor? attentionMask, int maxNewTokens, int minNewTokens, long[][]? forced)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var inputs = PrepareInputs(pixelValues, gridThw, inputIds, attentionMask);
        var output = Model.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, useCache: true);

        int b = (int)inputIds.shape[0];
        long promptLength = inputIds.shape[1];
        var eos = EosTokenIds.ToHashSet();
        using var eosIndex = torch.tensor(EosTokenIds, device: Device);
        var rows = Enumerable.Range(0, b).Select(_ => new List<long>()).ToArray();
        var done = new bool[b];
        var steps = new List<Tensor>();
        var mask = inputs.AttentionMask;
        while (true)
        {
            var logits = Logits(output.LastHiddenState.select(1, -1));
            steps.Add(logits);
            int step = rows[0].Count;
            long[] nextIds;
            if (forced is not null) nextIds = forced.Select(r => r[step]).ToArray();
            else
            {
                var scores = step < minNewTokens ? logits.index_fill(-1, eosIndex, float.NegativeInfinity) : logits;
                using var next = scores.argmax(-1).cpu();
                nextIds = next.data<long>().ToArray();
            }
            for (int r = 0; r < b; r++)
            {
                long id = done[r] && forced is null ? PadTokenId : nextIds[r];
                rows[r].Add(id);
                if (eos.Contains(id)) done[r] = true;
            }
            if ((forced is null && done.All(d => d)) || rows[0].Count == maxNewTokens) break;

            var cache = output.Cache!;
            mask = torch.cat(new[] { mask, torch.ones(b, 1, dtype: ScalarType.Int64, device: Device) }, 1);
            var positionIds = MultimodalRope.DecodePositions(inputs.RopeDeltas, promptLength, step);
            using var ids = torch.tensor(rows.Select(r => r[^1]).ToArray(), dtype: ScalarType.Int64, device: Device).view(b, 1);
            output = Model.Forward(Model.Embed(ids), positionIds, mask, cache, useCache: true);
            foreach (var kv in cache) kv.Dispose();   // superseded by the extended cache
        }
        return new QwenGeneration(rows.Select(r => r.ToArray()).ToArray(), torch.stack(steps).MoveToOuterDisposeScope());
    }
}
