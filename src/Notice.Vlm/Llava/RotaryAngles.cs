using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>
/// The rotary angles of a pass's position ids, cos/sin [B, 1, T, Dh] in <paramref name="dtype"/>:
/// the part in which Llama-style decoders differ (<see cref="LlamaModel"/>). LLaMA's is
/// <see cref="RotaryAngles.For"/> over [B, T] ids; Qwen2.5-VL's M-RoPE reads [3, B, T].
/// </summary>
public delegate RotaryAngles RotaryPositions(Tensor positionIds, ScalarType dtype);

/// <summary>
/// Rotary position embedding of one forward pass (LlamaRotaryEmbedding, no scaling): angle =
/// position * inv_freq_j with inv_freq_j = 1 / theta^(2j/d), computed in float32; each frequency
/// serves channels j and j + d/2 (rotate_half's layout, not interleaved).
/// </summary>
public sealed record RotaryAngles(Tensor Cos, Tensor Sin)
{
    /// <summary>Angles for <paramref name="positionIds"/> [B, T], as [B, 1, T, Dh] in <paramref name="dtype"/>.</summary>
    public static RotaryAngles For(Tensor positionIds, int headDim, double theta, ScalarType dtype)
    {
        var exponents = torch.arange(0, headDim, 2, dtype: ScalarType.Int64, device: positionIds.device).to(ScalarType.Float32) / headDim;
        var invFreq = torch.full_like(exponents, theta).pow(exponents).reciprocal();
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq;   // [B, T, Dh/2]
        var angles = torch.cat(new[] { freqs, freqs }, -1).unsqueeze(1);          // shared by every head
        return new RotaryAngles(angles.cos().to(dtype), angles.sin().to(dtype));
    }

    /// <summary>x * cos + rotate_half(x) * sin for x [B, heads, T, Dh].</summary>
    public Tensor Apply(Tensor x)
    {
        long half = x.shape[^1] / 2;
        var rotated = torch.cat(new[] { -x.narrow(-1, half, half), x.narrow(-1, 0, half) }, -1);
        return x * Cos + rotated * Sin;
    }
}
