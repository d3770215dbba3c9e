using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>LlamaForCausalLM: the decoder ("model") and its own, untied, output projection ("lm_head").</summary>
public sealed class LlamaForCausalLM : nn.Module
{
    private readonly Linear _lmHead;

    public LlamaModel Model { get; }

    internal LlamaForCausalLM(LlamaConfig config, Placement at) : base("language_model")
    {
        Model = new LlamaModel(Decoder(config), (ids, dtype) => RotaryAngles.For(ids, config.HeadDim, config.RopeTheta, dtype), at);
        _lmHead = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device: at.Device, dtype: at.DType);
        register_module("model", Model);
        register_module("lm_head", _lmHead);
    }

    /// <summary>LLaMA's decoder: attention_bias on all four projections, mlp_bias on the MLP's.</summary>
    private static DecoderConfig Decoder(LlamaConfig c) => new(c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers,
        c.NumAttentionHeads, c.NumKeyValueHeads, c.HiddenAct, c.RmsNormEps, QkvBias: c.AttentionBias, OutBias: c.AttentionBias, MlpBias: c.MlpBias);

    /// <summary>Logits over every vocabulary row of final-normed hidden states, in float32 (as transformers returns them;
    /// a float64 model's stay float64).</summary>
    public Tensor Logits(Tensor lastHiddenState)
    {
        var logits = _lmHead.forward(lastHiddenState);
        return logits.dtype == ScalarType.Float64 ? logits : logits.to(ScalarType.Float32);
    }
}
