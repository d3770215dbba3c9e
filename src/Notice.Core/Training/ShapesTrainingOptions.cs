using Notice.Core.Tasks;
using Notice.Vlm.Blip;

namespace Notice.Core.Training;

/// <summary>The size of a BLIP-VQA trained on the shapes tasks. The text encoder and the decoder
/// share one text config in BLIP, so they have the same number of layers.</summary>
public sealed record ShapesModelShape
{
    public int HiddenSize { get; init; } = 64;
    public int Heads { get; init; } = 8;
    public int VisionLayers { get; init; } = 3;
    public int TextLayers { get; init; } = 4;
    public int MlpRatio { get; init; } = 4;
    public int PatchSize { get; init; } = 8;
    /// <summary>Question positions: the longest shapes prompt has 11 tokens; room for a longer question typed at the CLI.</summary>
    public int MaxPositions { get; init; } = 64;

    /// <summary>The BlipConfig for images of <paramref name="imageSize"/> and a vocabulary whose last two ids are [DEC] and [ENC].</summary>
    public BlipConfig ToConfig(int imageSize, int vocabSize, int sepTokenId, int padTokenId) => new()
    {
        Vision = new BlipVisionConfig
        {
            HiddenSize = HiddenSize, IntermediateSize = MlpRatio * HiddenSize, NumHiddenLayers = VisionLayers,
            NumAttentionHeads = Heads, ImageSize = imageSize, PatchSize = PatchSize,
            // Also the init scale of the class and position embeddings (BLIP's default, 1e-10, leaves them all but zero).
            InitializerRange = 0.02,
        },
        Text = new BlipTextConfig
        {
            VocabSize = vocabSize, HiddenSize = HiddenSize, EncoderHiddenSize = HiddenSize, IntermediateSize = MlpRatio * HiddenSize,
            NumHiddenLayers = TextLayers, NumAttentionHeads = Heads, MaxPositionEmbeddings = MaxPositions,
            BosTokenId = vocabSize - 2, EosTokenId = sepTokenId, SepTokenId = sepTokenId, PadTokenId = padTokenId,
        },
    };
}

/// <summary>What <see cref="ShapesTrainer"/> trains, on what, and for how long.</summary>
public sealed record ShapesTrainingOptions
{
    public int Steps { get; init; } = 6000;
    public int Seed { get; init; }
    public int ImageSize { get; init; } = 64;
    /// <summary>Training pairs rendered per task; each gives three training rows (see <see cref="ShapesTrainer"/>).</summary>
    public int TrainPairsPerTask { get; init; } = 3000;
    public int HeldOutPairsPerTask { get; init; } = 300;
    /// <summary>Pairs per batch: three rows and two images each.</summary>
    public int BatchSize { get; init; } = 24;
    /// <summary>Peak learning rate of the one-cycle schedule (warm-up, then cosine decay).</summary>
    public double LearningRate { get; init; } = 2e-3;
    /// <summary>HF BLIP trains VQA with 0.1: it also keeps answer probabilities off 1.0, so patching has room to move them.</summary>
    public double LabelSmoothing { get; init; } = 0.1;
    /// <summary>Weight of the training-only attribute probe's loss next to the answer loss (0: answer loss alone); see <see cref="ShapesTrainer"/>.</summary>
    public double ProbeWeight { get; init; } = 1.0;
    /// <summary>Held-out evaluation every this many steps (and always at the end); 0: only at the end.</summary>
    public int EvaluateEvery { get; init; } = 500;
    /// <summary>
    /// libtorch threads while training (restored afterwards; 0 leaves them). One by default: its
    /// OpenMP threads spin while they wait for each other, which for a model this small costs far
    /// more than it gains once other processes share the cores (measured on 2 busy cores: 0.25 s a
    /// step on one thread, 1.7 to 2.9 s on two).
    /// </summary>
    public int Threads { get; init; } = 1;
    public IReadOnlyList<string> Tasks { get; init; } = ShapesTaskGenerator.Tasks;
    public ShapesModelShape Model { get; init; } = new();

    /// <summary>The held-out pairs' seed: another generator seed than training's, so no held-out image was trained on.</summary>
    public int HeldOutSeed => unchecked(Seed + 1_000_003);

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Steps, 1, nameof(Steps));
        ArgumentOutOfRangeException.ThrowIfLessThan(TrainPairsPerTask, 1, nameof(TrainPairsPerTask));
        ArgumentOutOfRangeException.ThrowIfLessThan(HeldOutPairsPerTask, 1, nameof(HeldOutPairsPerTask));
        ArgumentOutOfRangeException.ThrowIfLessThan(BatchSize, 1, nameof(BatchSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(ImageSize, ShapesTaskGenerator.MinImageSize, nameof(ImageSize));
        if (ImageSize % Model.PatchSize != 0)
            throw new ArgumentException($"image size {ImageSize} is not a multiple of the patch size {Model.PatchSize}");
        ArgumentOutOfRangeException.ThrowIfLessThan(Model.Heads, 1, "heads");
        ArgumentOutOfRangeException.ThrowIfLessThan(Model.TextLayers, 1, "text layers");
        ArgumentOutOfRangeException.ThrowIfLessThan(Model.VisionLayers, 1, "vision layers");
        if (Model.HiddenSize % Model.Heads != 0)
            throw new ArgumentException($"hidden size {Model.HiddenSize} is not a multiple of {Model.Heads} heads");
    }
}

/// <summary>One optimizer step, as reported while training.</summary>
public readonly record struct ShapesTrainingStep(int Step, int Steps, double Loss, double LearningRate);

/// <summary>Where <see cref="ShapesTrainer"/> reports as it goes (all optional, called on the training thread).</summary>
public sealed record ShapesTrainingCallbacks
{
    /// <summary>A phase starts: rendering, preprocessing, training, writing.</summary>
    public Action<string>? Status { get; init; }
    public Action<ShapesTrainingStep>? Step { get; init; }
    /// <summary>Held-out accuracy after the given step.</summary>
    public Action<int, ShapesAccuracy>? Evaluated { get; init; }
}
