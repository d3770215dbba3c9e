using Notice.Core.Benchmarks;
using Notice.Vlm.Blip;
using Notice.Vlm.Llava;
using Xunit;

namespace Notice.Tests;

public sealed class BenchFlopsTests
{
    [Fact]
    public void LlavaCountsFollowTheShapes()
    {
        var c = new LlamaConfig { VocabSize = 100, HiddenSize = 8, IntermediateSize = 16, NumHiddenLayers = 3, NumAttentionHeads = 2, NumKeyValueHeads = 2 };
        // q, o 8x8; k, v 8x8; scores and values over 5 positions; gate, up, down 8x16.
        double layer = 2 * (4 * 64) + 4 * 5 * 8 + 2 * 3 * 8 * 16;
        Assert.Equal(layer, Flops.LlamaLayerRow(c, 5));
        Assert.Equal(2 * 8 * 100, Flops.LlamaHeadRow(c));
        // units at layers 0, 1, 2 recompute 3, 2, 1 layers and the head; 2 heads per layer
        Assert.Equal(2 * ((3 + 2 + 1) * layer + 3 * 1600), Flops.LlavaExactLastPosition(c, 5));
        Assert.Equal(3 * 2 * (3 * layer + 1600), Flops.LlavaAtpLastPosition(c, 5));
    }

    [Fact]
    public void LlavaAtpBenchReportsUnitsFlopsAndThePeak()
    {
        var r = LlavaPatchingBenchmark.RunAtp(LlavaConfigs.Small, "small", samples: 1);
        var c = LlavaConfigs.Small.Text;
        Assert.Equal(c.NumHiddenLayers * c.NumAttentionHeads, r.Units);
        Assert.True(r.Spearman > 0.9, $"Spearman {r.Spearman}");
        Assert.Equal(Flops.LlavaExactLastPosition(c, r.PromptTokens) / r.Units, r.ExactFlopsPerUnit, 6);
        Assert.True(r.AtpFlopsPerUnit < r.ExactFlopsPerUnit);
        Assert.True(r.MatmulPeakGflops > 0 && r.ExactGflops > 0 && r.AtpGflops > 0);
        Assert.True(r.PeakMemoryBytes > 0);
    }

    [Fact]
    public void BlipAtpBenchReportsFlops()
    {
        var r = PatchingBenchmark.RunAtp(BlipConfigs.Small, "small", samples: 1);
        Assert.Equal(Flops.BlipExactAllPositions(BlipConfigs.Small, r.PromptTokens) / r.Units, r.ExactFlopsPerUnit, 6);
        Assert.True(r.AtpFlopsPerUnit > 0 && r.AtpFlopsPerUnit < r.ExactFlopsPerUnit);
        Assert.True(r.MatmulPeakGflops > 0);
    }
}
