using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>
/// Where the patches of a batch of images sit, as Qwen2.5-VL's vision tower (transformers 4.49)
/// works it out from image_grid_thw alone: each patch's (row, column) for the 2D rotary embedding,
/// the window order of the merge units, and the attention segments of window and full blocks.
/// </summary>
/// <param name="RotPosIds">[N, 2] int64 (row, column) of each patch, pixel_values order (merge-block order)</param>
/// <param name="WindowIndex">[N / merge^2] int64: merge units in window order (window after window,
/// raster inside a window); the tower permutes groups of merge^2 patch rows by it before block 0</param>
/// <param name="CuWindowSeqlens">window boundaries in patches (window order; zero-length windows removed)</param>
/// <param name="CuSeqlens">image (frame) boundaries in patches, used by the full-attention blocks</param>
public sealed record QwenVisionLayout(long[,] RotPosIds, long[] WindowIndex, long[] CuWindowSeqlens, long[] CuSeqlens)
{
    /// <summary>Patches in the batch.</summary>
    public long Patches => RotPosIds.GetLength(0);

    /// <summary>The layout of images with grids <paramref name="gridThw"/> (t, h, w in patches).</summary>
    public static QwenVisionLayout For(IReadOnlyList<(int T, int H, int W)> gridThw, QwenVisionConfig config)
    {
        int m = config.SpatialMergeSize, ws = config.WindowMergeUnits, unit = m * m;
        var rot = new List<(long, long)>();
        var windowIndex = new List<long>();
        var cuWindow = new List<long> { 0 };
        var cu = new List<long> { 0 };
        long unitOffset = 0;
        foreach (var (t, h, w) in gridThw)
        {
            if (t <= 0 || h <= 0 || w <= 0 || h % m != 0 || w % m != 0)
                throw new ArgumentException($"image_grid_thw ({t}, {h}, {w}): every size must be positive and h, w multiples of spatial_merge_size {m}");

            // rot_pos_emb: patch coordinates in merge-block order, repeated for every frame.
            for (int f = 0; f < t; f++)
            for (int bh = 0; bh < h / m; bh++)
            for (int bw = 0; bw < w / m; bw++)
            for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++)
                rot.Add((bh * m + i, bw * m + j));

            // get_window_index: the merged grid is padded to whole windows (always by at least one
            // window row/column, as transformers does) and read window by window.
            int lh = h / m, lw = w / m;
            int windowsH = (lh + ws - lh % ws) / ws, windowsW = (lw + ws - lw % ws) / ws;
            for (int f = 0; f < t; f++)
            for (int wh = 0; wh < windowsH; wh++)
            for (int ww = 0; ww < windowsW; ww++)
            {
                int count = 0;
                for (int y = wh * ws; y < Math.Min((wh + 1) * ws, lh); y++)
                for (int x = ww * ws; x < Math.Min((ww + 1) * ws, lw); x++, count++)
                    windowIndex.Add(unitOffset + (long)f * lh * lw + (long)y * lw + x);
                // unique_consecutive: an empty window repeats the previous boundary and is dropped.
                if (count > 0) cuWindow.Add(cuWindow[^1] + (long)count * unit);
            }
            unitOffset += (long)t * lh * lw;
            for (int f = 0; f < t; f++) cu.Add(cu[^1] + (long)h * w);
        }
        var rotPos = new long[rot.Count, 2];
        for (int i = 0; i < rot.Count; i++) (rotPos[i, 0], rotPos[i, 1]) = rot[i];
        return new QwenVisionLayout(rotPos, windowIndex.ToArray(), cuWindow.ToArray(), cu.ToArray());
    }

    /// <summary>The layout of an image_grid_thw tensor [images, 3].</summary>
    public static QwenVisionLayout For(Tensor gridThw, QwenVisionConfig config) => For(Grids(gridThw), config);

    /// <summary>The rows of an image_grid_thw tensor [images, 3].</summary>
    public static IReadOnlyList<(int T, int H, int W)> Grids(Tensor gridThw)
    {
        if (gridThw.dim() != 2 || gridThw.shape[1] != 3)
            throw new ArgumentException($"image_grid_thw of shape [{string.Join(", ", gridThw.shape)}]; expected [images, 3]");
        using var cpu = gridThw.to(ScalarType.Int64).cpu();
        var v = cpu.data<long>().ToArray();
        return Enumerable.Range(0, v.Length / 3).Select(i => ((int)v[3 * i], (int)v[3 * i + 1], (int)v[3 * i + 2])).ToList();
    }

    /// <summary>
    /// The 2D rotary tables in window order, [N, head_dim] float32 each: inv_freq_j = 1 / 10000^(2j/d)
    /// for d = head_dim / 2, a patch's angles [row * inv_freq, column * inv_freq], duplicated for rotate_half.
    /// </summary>
    public (Tensor Cos, Tensor Sin) RotaryTables(int headDim, Device device)
    {
        using var scope = torch.NewDisposeScope();
        int dim = headDim / 2;
        var exponents = torch.arange(0, dim, 2, dtype: ScalarType.Int64, device: device).to(ScalarType.Float32) / dim;
        var invFreq = torch.full_like(exponents, 10000.0).pow(exponents).reciprocal();
        var pos = PermutedRotPosIds(device).to(ScalarType.Float32);               // [N, 2]
        var freqs = (pos.unsqueeze(-1) * invFreq).flatten(1);                     // [N, d]: rows, then columns
        var emb = torch.cat(new[] { freqs, freqs }, -1);
        return (emb.cos().MoveToOuterDisposeScope(), emb.sin().MoveToOuterDisposeScope());
    }

    /// <summary>The rotary positions [N, 2] int64 permuted into window order, as the tower uses them.</summary>
    public Tensor PermutedRotPosIds(Device device)
    {
        using var scope = torch.NewDisposeScope();
        var pos = torch.tensor(RotPosIds, device: device);
        return ToWindowOrder(pos, WindowIndex.Length).MoveToOuterDisposeScope();
    }

    /// <summary>Rows [N, ...] in pixel_values order to window order: groups of merge^2 rows permuted by the window index.</summary>
    public Tensor ToWindowOrder(Tensor rows, long units)
    {
        using var index = torch.tensor(WindowIndex, device: rows.device);
        var grouped = rows.reshape(units, rows.shape[0] / units, -1);
        return grouped.index_select(0, index).reshape(rows.shape);
    }

    /// <summary>argsort(window_index): where each merge unit (raster order) sits in window order.</summary>
    public long[] ReverseWindowIndex()
    {
        var reverse = new long[WindowIndex.Length];
        for (int k = 0; k < WindowIndex.Length; k++) reverse[WindowIndex[k]] = k;
        return reverse;
    }
}
