using Notice.Vlm.Blip;
using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Notice.Vlm.Qwen25Vl;

/// <summary>
/// Qwen2_5_VisionTransformerPretrainedModel (transformers 4.49, eager attention): a bias-free
/// Conv3d patch embedding over the flattened patches; the patches regrouped into window order
/// (merge units window by window, see <see cref="QwenVisionLayout"/>); pre-RMSNorm blocks with 2D
/// rotary attention, inside windows or, for fullatt_block_indexes, inside each image, and a
/// SiLU-gated MLP; the patch merger (RMSNorm, 2x2 patches concatenated, Linear, GELU, Linear); the
/// merged features put back into raster order. Images of a batch never attend to each other.
/// Hook points: "vision.embed" (the patch embeddings, pixel_values order),
/// "vision.blocks.{l}.resid_post" (block outputs, window order), "vision.merger.ln_q",
/// "vision.merger.out" (window order) and "projector.out" (the image features, raster order: what
/// replaces the &lt;|image_pad|&gt; tokens).
/// </summary>
public sealed class QwenVisionTower : nn.Module
{
    private readonly Conv3d _patchEmbed;
    private readonly ModuleList<QwenVisionBlock> _blocks;
    private readonly QwenPatchMerger _merger;
    private readonly HashSet<int> _fullAttention;

    public QwenVisionConfig Config { get; }
    public int NumBlocks => _blocks.Count;

    internal QwenVisionTower(QwenVisionConfig config, Placement at) : base("visual")
    {
        Config = config;
        var c = config;
        _patchEmbed = nn.Conv3d(c.InChannels, c.HiddenSize, kernel_size: (c.TemporalPatchSize, c.PatchSize, c.PatchSize),
            stride: (c.TemporalPatchSize, c.PatchSize, c.PatchSize), bias: false, device: at.Device, dtype: at.DType);
        _blocks = new ModuleList<QwenVisionBlock>();
        for (int b = 0; b < c.Depth; b++) _blocks.Add(new QwenVisionBlock(c, b, at));
        _merger = new QwenPatchMerger(c, at);
        _fullAttention = c.FullAttBlockIndexes.ToHashSet();
        register_module("patch_embed", new PatchEmbedContainer(_patchEmbed));
        register_module("blocks", _blocks);
        register_module("merger", _merger);
    }

    /// <summary>Patch embeddings [N, Dv] of pixel_values [N, C*T*P*P] (rows in pixel_values order).</summary>
    public Tensor PatchEmbed(Tensor pixelValues)
    {
        var c = Config;
        var weight = _patchEmbed.weight!;
        var x = pixelValues.to(weight.dtype, weight.device).view(-1, c.InChannels, c.TemporalPatchSize, c.PatchSize, c.PatchSize);
        return _patchEmbed.forward(x).view(-1, c.HiddenSize);
    }

    /// <summary>
    /// Image features [sum of tokens, D] in raster order of each image's merged grid, image after image.
    /// </summary>
    /// <param name="pixelValues">[N, C*T*P*P] from <see cref="QwenImageProcessor"/></param>
    /// <param name="gridThw">[images, 3] int64</param>
    public Tensor Forward(Tensor pixelValues, Tensor gridThw, HookContext? hooks = null)
    {
        using var scope = torch.NewDisposeScope();
        var layout = QwenVisionLayout.For(gridThw, Config);
        if (pixelValues.dim() != 2 || pixelValues.shape[0] != layout.Patches || pixelValues.shape[1] != Config.PatchInputSize)
            throw new ArgumentException($"pixel_values of shape [{string.Join(", ", pixelValues.shape)}]; image_grid_thw describes [{layout.Patches}, {Config.PatchInputSize}]");
        long units = layout.WindowIndex.Length;

        var x = hooks.At(HookName.Embed(HookName.Vision), PatchEmbed(pixelValues));
        x = layout.ToWindowOrder(x, units);
        var (cos, sin) = layout.RotaryTables(Config.HeadDim, x.device);
        for (int b = 0; b < _blocks.Count; b++)
            x = _blocks[b].Forward(x, cos, sin, _fullAttention.Contains(b) ? layout.CuSeqlens : layout.CuWindowSeqlens, hooks);

        var merged = _merger.Forward(x, hooks);
        using var reverse = torch.tensor(layout.ReverseWindowIndex(), device: merged.device);
        return hooks.At("projector.out", merged.index_select(0, reverse)).MoveToOuterDisposeScope();
    }

    private sealed class PatchEmbedContainer : nn.Module
    {
        public PatchEmbedContainer(Conv3d proj) : base("patch_embed") => register_module("proj", proj);
    }
}

/// <summary>Qwen2_5_VLVisionBlock: x + attn(norm1(x)), then + mlp(norm2(x)); RMSNorms with eps 1e-6 (hard-coded in transformers).</summary>
internal sealed class QwenVisionBlock : nn.Module
{
    internal const double NormEps = 1e-6;

    private readonly RmsNorm _norm1, _norm2;
    private readonly QwenVisionAttention _attn;
    private readonly QwenVisionMlp _mlp;
    private readonly string _residPostHook;

    public QwenVisionBlock(QwenVisionConfig c, int block, Placement at) : base($"blocks.{block}")
    {
        _norm1 = new RmsNorm(c.HiddenSize, NormEps, at);
        _norm2 = new RmsNorm(c.HiddenSize, NormEps, at);
        _attn = new QwenVisionAttention(c, at);
        _mlp = new QwenVisionMlp(c, at);
        _residPostHook = HookName.ResidPost(block, HookName.Vision);
        register_module("norm1", _norm1);
        register_module("norm2", _norm2);
        register_module("attn", _attn);
        register_module("mlp", _mlp);
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, long[] segments, HookContext? hooks)
    {
        using var scope = torch.NewDisposeScope();
        x = x + _attn.Forward(_norm1.Forward(x), cos, sin, segments);
        x = x + _mlp.Forward(_norm2.Forward(x));
        return hooks.At(_residPostHook, x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Qwen2_5_VLVisionAttention (eager): one qkv projection (rows q, k, v, each head-major), the 2D
/// rotary embedding on q and k in float32, softmax(QK^T / sqrt(d)) V inside each segment
/// [cu[i], cu[i+1]) (a window or a whole image), proj. Computing each segment on its own equals
/// transformers' block-diagonal mask of float32 min (the masked probabilities are exactly zero)
/// without its N x N scores.
/// </summary>
internal sealed class QwenVisionAttention : nn.Module
{
    private readonly Linear _qkv, _proj;
    private readonly int _heads, _headDim;

    public QwenVisionAttention(QwenVisionConfig c, Placement at) : base("attn")
    {
        _heads = c.NumHeads;
        _headDim = c.HeadDim;
        _qkv = nn.Linear(c.HiddenSize, 3 * c.HiddenSize, hasBias: true, device: at.Device, dtype: at.DType);
        _proj = nn.Linear(c.HiddenSize, c.HiddenSize, hasBias: true, device: at.Device, dtype: at.DType);
        register_module("qkv", _qkv);
        register_module("proj", _proj);
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, long[] segments)
    {
        long n = x.shape[0];
        var qkv = _qkv.forward(x).view(n, 3, _heads, _headDim).permute(1, 2, 0, 3);   // [3, H, N, Dh]
        var q = Rotate(qkv[0], cos, sin);
        var k = Rotate(qkv[1], cos, sin);
        var v = qkv[2];
        Tensor context;                                                                 // [H, N, Dh]
        if (segments.Length == 2)
        {
            context = Attend(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1);
        }
        else
        {
            // Segments of one length (most windows are full) are attended as one batch: their
            // patches are gathered, attended per segment, and written back in place.
            context = torch.empty_like(q);
            foreach (var group in Enumerable.Range(0, segments.Length - 1).GroupBy(s => segments[s + 1] - segments[s]))
            {
                long length = group.Key;
                if (length == 0) continue;
                var positions = group.SelectMany(s => Enumerable.Range(0, (int)length).Select(i => segments[s] + i)).ToArray();
                using var index = torch.tensor(positions, device: x.device);
                long count = positions.Length / length;
                Tensor Gather(Tensor t) => t.index_select(1, index).view(_heads, count, length, _headDim);
                context.index_copy_(1, index, Attend(Gather(q), Gather(k), Gather(v)).view(_heads, count * length, _headDim));
            }
        }
        return _proj.forward(context.transpose(0, 1).reshape(n, -1));
    }

    /// <summary>softmax(QK^T / sqrt(Dh)) V (softmax in float32) inside each segment, for q, k, v [H, segments, length, Dh].</summary>
    private Tensor Attend(Tensor q, Tensor k, Tensor v)
    {
        var scores = torch.matmul(q, k.transpose(-1, -2)) / Math.Sqrt(_headDim);
        var probs = scores.to(ScalarType.Float32).softmax(-1).to(q.dtype);
        return torch.matmul(probs, v);
    }

    /// <summary>x * cos + rotate_half(x) * sin in float32, for x [H, N, Dh] and tables [N, Dh].</summary>
    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        var dtype = x.dtype;
        var h = x.to(ScalarType.Float32);
        long half = h.shape[^1] / 2;
        var rotated = torch.cat(new[] { -h.narrow(-1, half, half), h.narrow(-1, 0, half) }, -1);
        return (h * cos + rotated * sin).to(dtype);
    }
}

/// <summary>Qwen2_5_VLMLP with biases: down(act(gate(x)) * up(x)).</summary>
internal sealed class QwenVisionMlp : nn.Module
{
    private readonly Linear _gate, _up, _down;
    private readonly string _act;

    public QwenVisionMlp(QwenVisionConfig c, Placement at) : base("mlp")
    {
        _gate = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: true, device: at.Device, dtype: at.DType);
        _up = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: true, device: at.Device, dtype: at.DType);
        _down = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: true, device: at.Device, dtype: at.DType);
        _act = c.HiddenAct;
        register_module("gate_proj", _gate);
        register_module("up_proj", _up);
        register_module("down_proj", _down);
    }

    public Tensor Forward(Tensor x) => _down.forward(Activations.Apply(_act, _gate.forward(x)) * _up.forward(x));
}

/// <summary>
/// Qwen2_5_VLPatchMerger: RMSNorm ln_q per patch (eps 1e-6), each merge unit's merge^2 consecutive
/// rows concatenated, then mlp.0 (Linear), GELU (erf form), mlp.2 (Linear) to the language model's width.
/// </summary>
internal sealed class QwenPatchMerger : nn.Module
{
    private readonly RmsNorm _lnQ;
    private readonly Linear _fc1, _fc2;
    private readonly int _unitWidth;

    public QwenPatchMerger(QwenVisionConfig c, Placement at) : base("merger")
    {
        _unitWidth = c.HiddenSize * c.MergeUnit;
        _lnQ = new RmsNorm(c.HiddenSize, QwenVisionBlock.NormEps, at);
        _fc1 = nn.Linear(_unitWidth, _unitWidth, hasBias: true, device: at.Device, dtype: at.DType);
        _fc2 = nn.Linear(_unitWidth, c.OutHiddenSize, hasBias: true, device: at.Device, dtype: at.DType);
        register_module("ln_q", _lnQ);
        register_module("mlp", new MlpContainer(_fc1, _fc2));
    }

    /// <summary>[N, Dv] block output (window order) to [N / merge^2, D] (still window order).</summary>
    public Tensor Forward(Tensor x, HookContext? hooks)
    {
        var normed = hooks.At(HookName.VisionMergerNorm, _lnQ.Forward(x));
        var h = nn.functional.gelu(_fc1.forward(normed.view(-1, _unitWidth)));
        return hooks.At(HookName.VisionMergerOut, _fc2.forward(h));
    }

    /// <summary>nn.Sequential(Linear, GELU, Linear): the Linears are its entries 0 and 2.</summary>
    private sealed class MlpContainer : nn.Module
    {
        public MlpContainer(Linear fc1, Linear fc2) : base("mlp")
        {
            register_module("0", fc1);
            register_module("2", fc2);
        }
    }
}
