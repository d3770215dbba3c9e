namespace Notice.Vlm.Qwen25Vl;

/// <summary>Qwen2.5-VL shapes for benchmarks and load tests (random weights).</summary>
public static class QwenConfigs
{
    /// <summary>Qwen/Qwen2.5-VL-7B-Instruct: vision tower 32 blocks (hidden 1280, 16 heads, MLP 3420,
    /// full attention in blocks 7, 15, 23, 31), Qwen2 decoder 28 layers (hidden 3584, 28 heads, 4 K/V
    /// heads, MLP 18944), 152064 vocabulary rows, untied LM head.</summary>
    public static QwenConfig Qwen25Vl7B => At7BWidths(28, 32);

    /// <summary>Qwen2.5-VL-7B's widths with fewer decoder layers and vision blocks (the last vision block full-attention).</summary>
    public static QwenConfig At7BWidths(int textLayers, int visionBlocks) => new()
    {
        Vision = new QwenVisionConfig
        {
            Depth = visionBlocks, HiddenSize = 1280, IntermediateSize = 3420, NumHeads = 16, OutHiddenSize = 3584, WindowSize = 112,
            FullAttBlockIndexes = visionBlocks == 32 ? [7, 15, 23, 31] : [visionBlocks - 1],
        },
        VocabSize = 152064, HiddenSize = 3584, IntermediateSize = 18944, NumHiddenLayers = textLayers, NumAttentionHeads = 28,
        NumKeyValueHeads = 4, RmsNormEps = 1e-6, RopeTheta = 1000000.0, MropeSection = [16, 24, 24], TieWordEmbeddings = false,
    };

    /// <summary>A small model for quick checks (the fixture's shapes, more layers).</summary>
    public static QwenConfig Small => new()
    {
        Vision = new QwenVisionConfig { Depth = 2, HiddenSize = 48, IntermediateSize = 96, NumHeads = 3, OutHiddenSize = 128, WindowSize = 56, FullAttBlockIndexes = [1] },
        VocabSize = 512, HiddenSize = 128, IntermediateSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 2,
        RmsNormEps = 1e-6, MropeSection = [2, 3, 3], TieWordEmbeddings = true,
        BosTokenId = 500, EosTokenId = 501, VisionStartTokenId = 502, VisionEndTokenId = 503, VisionTokenId = 504, ImageTokenId = 505, VideoTokenId = 506,
    };
}
