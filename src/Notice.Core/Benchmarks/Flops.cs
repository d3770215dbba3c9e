using System.Diagnostics;
using Notice.Vlm.Blip;
using Notice.Vlm.Llava;
using TorchSharp;

namespace Notice.Core.Benchmarks;

/// <summary>
/// Analytic floating-point operation counts of the patching paths from the model's shapes (matmuls
/// only, 2 m n k each; norms, activations and softmax left out), and the machine's measured matmul
/// peak, so a bench can say what share of the peak each path reaches.
/// </summary>
public static class Flops
{
    /// <summary>One LLaMA decoder layer for one row at one position attending over <paramref name="context"/>
    /// positions: q, k, v, o projections, scores and weighted values, gate, up and down projections.</summary>
    public static double LlamaLayerRow(LlamaConfig c, int context)
    {
        double d = c.HiddenSize, kv = c.NumKeyValueHeads * c.HeadDim, ff = c.IntermediateSize;
        return 2 * (d * d + 2 * d * kv + d * d) + 2 * 2 * context * d + 2 * 3 * d * ff;
    }

    /// <summary>The language-model head for one row: the hidden state against the whole vocabulary.</summary>
    public static double LlamaHeadRow(LlamaConfig c) => 2.0 * c.HiddenSize * c.VocabSize;

    /// <summary>
    /// The exact fast path on last-position head units: a unit at layer l recomputes the last position
    /// from layer l up (L - l layers, against the cached keys and values) and the head, so the units
    /// of every layer x head cost H (Σ_l (L - l) layers + L heads).
    /// </summary>
    public static double LlavaExactLastPosition(LlamaConfig c, int positions)
    {
        int L = c.NumHiddenLayers, H = c.NumAttentionHeads;
        double layerRow = LlamaLayerRow(c, positions), head = LlamaHeadRow(c);
        double total = 0;
        for (int l = 0; l < L; l++) total += H * ((L - l) * layerRow + head);
        return total;
    }

    /// <summary>
    /// AtP on last-position units: one corrupt forward of the last position through every layer in two
    /// rows (the logit gap's and the probability's), and a backward pass counted as twice the forward
    /// (a gradient for each matmul's input and, where a recorded activation needs it, the chain back).
    /// </summary>
    public static double LlavaAtpLastPosition(LlamaConfig c, int positions) =>
        3 * 2 * (c.NumHiddenLayers * LlamaLayerRow(c, positions) + LlamaHeadRow(c));

    /// <summary>One BLIP question-encoder layer for one row of <paramref name="tokens"/> tokens: self-attention
    /// (q, k, v, o and T x T scores), cross-attention to the cached image keys and values (q, o and T x image
    /// scores), the MLP.</summary>
    public static double BlipEncoderLayerRow(BlipTextConfig c, int tokens, int imagePositions)
    {
        double d = c.HiddenSize, ff = c.IntermediateSize, t = tokens;
        return 2 * t * 4 * d * d + 2 * 2 * t * t * d
             + 2 * t * 2 * d * d + 2 * 2 * t * imagePositions * d
             + 2 * t * 2 * d * ff;
    }

    /// <summary>BLIP's answer decoder for its first step, one row: every layer with one token (self-attention,
    /// cross-attention whose keys and values come from the row's <paramref name="tokens"/> question states, MLP),
    /// then the prediction head (transform and the whole vocabulary).</summary>
    public static double BlipDecoderRow(BlipTextConfig c, int tokens)
    {
        double d = c.HiddenSize, ff = c.IntermediateSize, t = tokens;
        double layer = 2 * 4 * d * d + 2 * 2 * d
                     + 2 * 2 * d * d + 2 * t * 2 * d * d + 2 * 2 * t * d
                     + 2 * 2 * d * ff;
        return c.NumHiddenLayers * layer + 2 * d * d + 2 * d * c.VocabSize;
    }

    /// <summary>
    /// BLIP's exact fast path on head units at every question position: a unit at layer l reruns the
    /// question encoder from layer l (all T positions, against the cached image keys and values) and the
    /// decoder's first step, so the T x L x H units cost T H Σ_l ((L - l) encoder layers + decoder).
    /// </summary>
    public static double BlipExactAllPositions(BlipConfig c, int tokens)
    {
        int L = c.Text.NumHiddenLayers, H = c.Text.NumAttentionHeads;
        double enc = BlipEncoderLayerRow(c.Text, tokens, c.Vision.NumPatches + 1), dec = BlipDecoderRow(c.Text, tokens);
        double total = 0;
        for (int l = 0; l < L; l++) total += (double)tokens * H * ((L - l) * enc + dec);
        return total;
    }

    /// <summary>BLIP's AtP: the question encoder from layer 0 and the decoder's first step in two rows, and a
    /// backward pass counted as twice the forward.</summary>
    public static double BlipAtpAllPositions(BlipConfig c, int tokens) =>
        3 * 2 * (c.Text.NumHiddenLayers * BlipEncoderLayerRow(c.Text, tokens, c.Vision.NumPatches + 1) + BlipDecoderRow(c.Text, tokens));

    /// <summary>GFLOP/s of a square matmul in <paramref name="dtype"/> on the current torch threads, in the
    /// layout of the model's linear layers (x W^T; float16 as a plain a b ran at 0.5 against 29 GFLOP/s
    /// on the README's CPU). Best of <paramref name="repeats"/> after a warm-up; where one matmul takes over
    /// a second, that first one counts and the repeats stop after 10 s.</summary>
    public static double MatmulPeakGflops(int n = 2048, int repeats = 5, torch.ScalarType dtype = torch.ScalarType.Float32)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var a = torch.randn(n, n, dtype: dtype);
        var w = torch.randn(n, n, dtype: dtype);
        double best = double.MaxValue;
        var total = Stopwatch.StartNew();
        for (int i = 0; i <= repeats; i++)
        {
            var sw = Stopwatch.StartNew();
            torch.nn.functional.linear(a, w).Dispose();
            if (i > 0 || sw.Elapsed.TotalSeconds > 1) best = Math.Min(best, sw.Elapsed.TotalSeconds);
            if (best < double.MaxValue && total.Elapsed.TotalSeconds > 10) break;
        }
        return 2.0 * n * n * n / best / 1e9;
    }
}
