using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>Noise mode's corruption: Gaussian noise whose standard deviation is a multiple of the
/// embeddings' own, from a seeded generator, so a run is repeatable.</summary>
public static class GaussianNoise
{
    /// <summary>A new tensor (outside any dispose scope): <paramref name="embeds"/> plus the noise.</summary>
    public static Tensor Add(Tensor embeds, double multiple, long seed)
    {
        using var scope = torch.NewDisposeScope();
        using var gen = new torch.Generator((ulong)seed);
        var std = embeds.to(ScalarType.Float32).std().item<float>();
        var noise = torch.randn(embeds.shape, generator: gen, dtype: ScalarType.Float32).to(embeds.dtype).to(embeds.device);
        var noisy = embeds + noise * (multiple * std);
        noisy.DetachFromDisposeScope();
        return noisy;
    }
}
