using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>
/// Qwen2_5_VLAttention (eager) of the language model: q/k/v projections with biases, o_proj
/// without; M-RoPE on queries and keys; grouped-query attention (query head h reads key/value
/// head h / (H / Hkv)); softmax(QK^T / sqrt(Dh) + mask) in float32. Hook points (per layer l):
/// "text.blocks.{l}.attn.pattern" [B, H, T, S] (probabilities over cached and new positions),
/// "text.blocks.{l}.attn.z" [B, T, H, Dh] (per-head context, the input of o_proj),
/// "text.blocks.{l}.attn.out" (the o_proj output).
/// </summary>
public sealed class QwenAttention : nn.Module
{
    private readonly Linear _q, _k, _v, _o;
    private readonly int _heads, _kvHeads, _headDim;
    private readonly string _patternHook, _zHook, _outHook;

    internal QwenAttention(QwenConfig c, int layer, Placement at) : base("self_attn")
    {
        _heads = c.NumAttentionHeads;
        _kvHeads = c.NumKeyValueHeads;
        _headDim = c.HeadDim;
        _q = nn.Linear(c.HiddenSize, _heads * _headDim, hasBias: true, device: at.Device, dtype: at.DType);
        _k = nn.Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: true, device: at.Device, dtype: at.DType);
        _v = nn.Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: true, device: at.Device, dtype: at.DType);
        _o = nn.Linear(_heads * _headDim, c.HiddenSize, hasBias: false, device: at.Device, dtype: at.DType);
        string b = $"text.blocks.{layer}.attn";
        _patternHook = b + ".pattern";
        _zHook = b + ".z";
        _outHook = b + ".out";
        register_module("q_proj", _q);
        register_module("k_proj", _k);
        register_module("v_proj", _v);
        register_module("o_proj", _o);
    }

    /// <summary>
    /// Attention output [B, T, D] of the T positions in <paramref name="x"/>, and the layer's cache
    /// extended by them. <paramref name="mask"/>: additive float32 [B or 1, 1, T, S] (see
    /// <see cref="LlamaModel.AttentionMask"/>), S = past length + T. A one-row past serves every row.
    /// </summary>
    public (Tensor Output, KeyValueCache Cache) Forward(Tensor x, RotaryAngles angles, Tensor? mask, KeyValueCache? past, HookContext? hooks)
    {
        long b = x.shape[0], t = x.shape[1];
        var q = angles.Apply(SplitHeads(_q.forward(x), _heads));
        var k = angles.Apply(SplitHeads(_k.forward(x), _kvHeads));
        var v = SplitHeads(_v.forward(x), _kvHeads);

        var cache = past is null ? new KeyValueCache(k, v) : past.Append(k, v);
        var scores = torch.matmul(q, RepeatKv(cache.Keys).transpose(2, 3)) / Math.Sqrt(_headDim);
        // Softmax in float32, the mask added in float32 too (a fully masked padding row stays finite in half precision).
        var dtype = scores.dtype;
        scores = scores.to(ScalarType.Float32);
        if (mask is not null) scores = scores + mask;
        var probs = hooks.At(_patternHook, scores.softmax(-1).to(dtype));
        var context = torch.matmul(probs, RepeatKv(cache.Values));                  // [B, H, T, Dh]

        var z = hooks.At(_zHook, context.transpose(1, 2).contiguous());
        var output = hooks.At(_outHook, _o.forward(z.reshape(b, t, -1)));
        return (output, cache);
    }

    private Tensor SplitHeads(Tensor x, int heads) => x.view(x.shape[0], x.shape[1], heads, _headDim).transpose(1, 2);

    /// <summary>transformers' repeat_kv: each key/value head serves H / Hkv consecutive query heads.</summary>
    private Tensor RepeatKv(Tensor x) => _kvHeads == _heads ? x : x.repeat_interleave(_heads / _kvHeads, dim: 1);
}
