using Notice.Vlm.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>
/// LlamaAttention (eager; also Qwen2's, with biases on q/k/v and none on o_proj, see
/// <see cref="DecoderConfig"/>): rotary positions on queries and keys (LLaMA's or M-RoPE's angles
/// come with the call), grouped-query attention when there are fewer key/value heads than query
/// heads, softmax(QK^T / sqrt(d) + mask) V per head, o_proj.
/// Hook points (per layer l): "text.blocks.{l}.attn.pattern" [B, H, T, S] (probabilities),
/// "text.blocks.{l}.attn.z" [B, T, H, Dh] (per-head context, the input of o_proj),
/// "text.blocks.{l}.attn.out" (the o_proj output).
/// </summary>
public sealed class LlamaAttention : nn.Module
{
    private readonly Linear _q, _k, _v, _o;
    private readonly int _heads, _kvHeads, _headDim;
    private readonly string _patternHook, _zHook, _outHook;

    internal LlamaAttention(DecoderConfig c, int layer, Placement at) : base("self_attn")
    {
        _heads = c.NumAttentionHeads;
        _kvHeads = c.NumKeyValueHeads;
        _headDim = c.HeadDim;
        _q = nn.Linear(c.HiddenSize, _heads * _headDim, hasBias: c.QkvBias, device: at.Device, dtype: at.DType);
        _k = nn.Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: c.QkvBias, device: at.Device, dtype: at.DType);
        _v = nn.Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: c.QkvBias, device: at.Device, dtype: at.DType);
        _o = nn.Linear(_heads * _headDim, c.HiddenSize, hasBias: c.OutBias, device: at.Device, dtype: at.DType);
        _patternHook = HookName.AttnPattern(layer);
        _zHook = HookName.AttnZ(layer);
        _outHook = HookName.AttnOut(layer);
        register_module("q_proj", _q);
        register_module("k_proj", _k);
        register_module("v_proj", _v);
        register_module("o_proj", _o);
    }

    /// <summary>
    /// Attention output [B, T, D] of the T positions in <paramref name="x"/>, and the layer's cache
    /// extended by them (null when <paramref name="returnCache"/> is false and rows shared a one-row
    /// past). <paramref name="mask"/>: additive float32 [B or 1, 1, T, S] (see
    /// <see cref="LlamaModel.AttentionMask"/>), S = past length + T.
    /// </summary>
    public (Tensor Output, KeyValueCache? Cache) Forward(Tensor x, RotaryAngles angles, Tensor? mask, KeyValueCache? past, HookContext? hooks, bool returnCache = true)
    {
        long b = x.shape[0], t = x.shape[1];
        var q = angles.Apply(SplitHeads(_q.forward(x), _heads));
        var k = angles.Apply(SplitHeads(_k.forward(x), _kvHeads));
        var v = SplitHeads(_v.forward(x), _kvHeads);

        KeyValueCache? cache = null;
        Tensor context;   // [B, H, T, Dh]
        if (past is not null && past.Keys.shape[0] == 1 && b > 1 && !returnCache)
        {
            context = SharedPastAttention(q, k, v, past, mask, hooks);
        }
        else
        {
            cache = past is null ? new KeyValueCache(k, v) : past.Append(k, v);
            var scores = torch.matmul(q, RepeatKv(cache.Keys).transpose(2, 3)) / Math.Sqrt(_headDim);
            context = torch.matmul(Probabilities(scores, mask, hooks), RepeatKv(cache.Values));
        }

        var z = hooks.At(_zHook, context.transpose(1, 2).contiguous());
        var output = hooks.At(_outHook, _o.forward(z.reshape(b, t, -1)));
        return (output, cache);
    }

    /// <summary>
    /// Attention of B rows that share one cached past (a one-row cache under a batch of patched
    /// rows): the rows are folded into the query axis, so the past's keys and values are read once
    /// for every row instead of being copied per row. Same result as appending to an expanded cache.
    /// </summary>
    private Tensor SharedPastAttention(Tensor q, Tensor k, Tensor v, KeyValueCache past, Tensor? mask, HookContext? hooks)
    {
        long b = q.shape[0], t = q.shape[2], s = past.Length;
        var pastKeys = RepeatKv(past.Keys)[0];                                   // [H, S, Dh]
        var pastValues = RepeatKv(past.Values)[0];
        var folded = q.transpose(0, 1).reshape(_heads, b * t, _headDim);        // [H, B*T, Dh]
        var pastScores = torch.matmul(folded, pastKeys.transpose(1, 2)).view(_heads, b, t, s).transpose(0, 1);
        var newScores = torch.matmul(q, RepeatKv(k).transpose(2, 3));          // [B, H, T, T]
        var probs = Probabilities(torch.cat(new[] { pastScores, newScores }, -1) / Math.Sqrt(_headDim), mask, hooks);
        var pastProbs = probs.narrow(-1, 0, s).transpose(0, 1).reshape(_heads, b * t, s);
        var fromPast = torch.matmul(pastProbs, pastValues).view(_heads, b, t, _headDim).transpose(0, 1);
        return fromPast + torch.matmul(probs.narrow(-1, s, t), RepeatKv(v));
    }

    /// <summary>softmax(scores + mask) [B, H, T, S], through the pattern hook point.</summary>
    private Tensor Probabilities(Tensor scores, Tensor? mask, HookContext? hooks)
    {
        // Softmax in float32, as transformers does. The mask is added in float32 as well, so that a
        // query whose keys are all masked (a left-padding row) stays finite in half precision.
        var dtype = scores.dtype;
        scores = scores.to(dtype == ScalarType.Float64 ? dtype : ScalarType.Float32);   // float64 stays float64 (gradient checks)
        if (mask is not null) scores = scores + mask;
        return hooks.At(_patternHook, scores.softmax(-1).to(dtype));
    }

    private Tensor SplitHeads(Tensor x, int heads) => x.view(x.shape[0], x.shape[1], heads, _headDim).transpose(1, 2);

    /// <summary>transformers' repeat_kv: each key/value head serves H / Hkv consecutive query heads.</summary>
    private Tensor RepeatKv(Tensor x) => _kvHeads == _heads ? x : x.repeat_interleave(_heads / _kvHeads, dim: 1);
}
