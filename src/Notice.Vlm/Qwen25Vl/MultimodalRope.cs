using Notice.Vlm.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>3D position ids of a batch and how far each row's positions fall behind its length.</summary>
/// <param name="PositionIds">[3, B, T] int64 (temporal, height, width); padding positions are 1</param>
/// <param name="RopeDeltas">[B, 1] int64: max position + 1 - T; decode step k (feeding new token k)
/// uses position T + k + delta on every axis</param>
public sealed record QwenPositions(Tensor PositionIds, Tensor RopeDeltas);

/// <summary>
/// Qwen2.5-VL's multimodal rotary embedding (M-RoPE, transformers 4.49): ordinary RoPE frequencies
/// inv_freq_j = 1 / theta^(2j/Dh), but each frequency takes its angle from one of three position
/// axes: mrope_section [t, h, w] frequencies from the temporal, height and width positions (the
/// channel layout of cat(freqs, freqs) repeats the split: sections * 2). For text, where the three
/// positions are equal, it is ordinary RoPE. Also get_rope_index, which assigns the positions.
/// </summary>
public static class MultimodalRope
{
    /// <summary>
    /// cos/sin [B, 1, T, Dh] in <paramref name="dtype"/> for position ids [3, B, T], computed in
    /// float32 as transformers does (Qwen2.5-VL's <see cref="RotaryPositions"/>); apply with <see cref="RotaryAngles.Apply"/>.
    /// </summary>
    public static RotaryAngles Angles(Tensor positionIds, int headDim, double theta, int[] mropeSection, ScalarType dtype)
    {
        if (positionIds.dim() != 3 || positionIds.shape[0] != 3)
            throw new ArgumentException($"M-RoPE position ids of shape [{string.Join(", ", positionIds.shape)}]; expected [3, B, T]");
        using var scope = torch.NewDisposeScope();
        var exponents = torch.arange(0, headDim, 2, dtype: ScalarType.Int64, device: positionIds.device).to(ScalarType.Float32) / headDim;
        var invFreq = torch.full_like(exponents, theta).pow(exponents).reciprocal();
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq;      // [3, B, T, Dh/2]
        var emb = torch.cat(new[] { freqs, freqs }, -1);                            // [3, B, T, Dh]
        var cos = emb.cos();
        var sin = emb.sin();
        // Channel blocks of sizes sections * 2, block i from axis i % 3.
        var picksCos = new List<Tensor>();
        var picksSin = new List<Tensor>();
        long start = 0;
        for (int i = 0; i < 2 * mropeSection.Length; i++)
        {
            int size = mropeSection[i % mropeSection.Length];
            int axis = i % 3;
            picksCos.Add(cos[axis].narrow(-1, start, size));
            picksSin.Add(sin[axis].narrow(-1, start, size));
            start += size;
        }
        var c = torch.cat(picksCos, -1).unsqueeze(1).to(dtype);
        var s = torch.cat(picksSin, -1).unsqueeze(1).to(dtype);
        return new RotaryAngles(c.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// get_rope_index for images: per row, over its attended tokens only, text runs count up on
    /// all three axes; an image (its grid_h/merge x grid_w/merge merged tokens, raster order) after
    /// text ending at s - 1 gets (s + 0, s + y, s + x) (still images: temporal index 0); the text
    /// after it continues from the largest position so far + 1. Images are taken from
    /// <paramref name="gridThw"/> in order across the rows. Padding positions get 1. Videos
    /// (&lt;|video_pad|&gt;, second_per_grid_ts) are not supported: their tokens count as text.
    /// </summary>
    /// <param name="inputIds">[B, T]</param>
    /// <param name="gridThw">[images, 3]: one row per &lt;|vision_start|&gt;&lt;|image_pad|&gt; in the batch</param>
    /// <param name="attentionMask">[B, T]; null: every position attended</param>
    public static QwenPositions RopeIndex(Tensor inputIds, Tensor? gridThw, Tensor? attentionMask, QwenConfig config)
    {
        long b = inputIds.shape[0], t = inputIds.shape[1];
        using var idsCpu = inputIds.to(ScalarType.Int64).cpu();
        var ids = idsCpu.data<long>().ToArray();
        long[] mask;
        if (attentionMask is null) mask = Enumerable.Repeat(1L, ids.Length).ToArray();
        else
        {
            using var m = attentionMask.to(ScalarType.Int64).cpu();
            mask = m.data<long>().ToArray();
        }
        var grids = gridThw is null ? Array.Empty<(int T, int H, int W)>() : QwenVisionLayout.Grids(gridThw);
        int merge = config.Vision.SpatialMergeSize;

        var positions = new long[3, b, t];
        for (int a = 0; a < 3; a++) for (int r = 0; r < b; r++) for (int i = 0; i < t; i++) positions[a, r, i] = 1;
        var deltas = new long[b];
        int image = 0;
        for (int r = 0; r < b; r++)
        {
            var attended = Enumerable.Range(0, (int)t).Where(i => mask[r * t + i] == 1).ToArray();
            var tokens = attended.Select(i => ids[r * t + i]).ToArray();
            int images = 0;
            for (int i = 0; i + 1 < tokens.Length; i++)
                if (tokens[i] == config.VisionStartTokenId && tokens[i + 1] == config.ImageTokenId) images++;

            var rowPos = new List<(long T, long H, long W)>(tokens.Length);
            long next = 0;   // max position so far + 1
            int st = 0;
            for (int k = 0; k < images; k++)
            {
                int ed = Array.IndexOf(tokens, (long)config.ImageTokenId, st);
                if (image >= grids.Count)
                    throw new ArgumentException($"input_ids hold more images than image_grid_thw's {grids.Count} rows");
                var (gt, gh, gw) = grids[image++];
                long lt = gt, lh = gh / merge, lw = gw / merge;
                for (int i = st; i < ed; i++, next++) rowPos.Add((next, next, next));
                long s = next;
                long max = s - 1;
                for (long f = 0; f < lt; f++)
                for (long y = 0; y < lh; y++)
                for (long x = 0; x < lw; x++)
                {
                    // Still images: the temporal index is 0 for every frame (frame * second_per_grid_t(0) * tokens_per_second).
                    rowPos.Add((s, s + y, s + x));
                    max = Math.Max(max, Math.Max(s + y, s + x));
                }
                next = max + 1;
                st = ed + (int)(lt * lh * lw);
            }
            for (int i = st; i < tokens.Length; i++, next++) rowPos.Add((next, next, next));
            if (rowPos.Count != tokens.Length)
                throw new ArgumentException($"row {r}: {tokens.Length} attended tokens, but its images' grids account for {rowPos.Count} positions (too few <|image_pad|> tokens for image_grid_thw)");
            for (int k = 0; k < attended.Length; k++)
            {
                positions[0, r, attended[k]] = rowPos[k].T;
                positions[1, r, attended[k]] = rowPos[k].H;
                positions[2, r, attended[k]] = rowPos[k].W;
            }
            long maxPos = rowPos.Count == 0 ? -1 : rowPos.Max(p => Math.Max(p.T, Math.Max(p.H, p.W)));
            deltas[r] = maxPos + 1 - t;
        }
        return new QwenPositions(torch.tensor(positions, device: inputIds.device), torch.tensor(deltas, device: inputIds.device).view(b, 1));
    }

    /// <summary>Position ids [3, B, 1] of decode step k: T + k + rope_delta on every axis.</summary>
    public static Tensor DecodePositions(Tensor ropeDeltas, long promptLength, long step) =>
        (ropeDeltas + (promptLength + step)).view(1, -1, 1).expand(3, -1, 1).contiguous();
}
