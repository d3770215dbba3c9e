using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Notice.Cli.Commands;
using Notice.Core.Analysis;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Core.Tasks;
using Notice.Core.Training;
using Notice.Vlm.Blip;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Text;
using Xunit.Abstractions;

namespace Notice.Tests;

/// <summary>Tensor names as a checkpoint stores them, with layer numbers folded, so checkpoints
/// of different depths compare.</summary>
internal static partial class CheckpointNames
{
    public static SortedSet<string> Folded(string folder)
    {
        using var store = TensorStore.Open(folder);
        return new SortedSet<string>(store.Names.Select(n => LayerNumber().Replace(n, ".N.")), StringComparer.Ordinal);
    }

    [GeneratedRegex(@"\.\d+\.")]
    private static partial Regex LayerNumber();
}

public sealed class ShapesTrainingTests(ITestOutputHelper output)
{
    // Small enough to train in seconds on two cores; the fixture's layer counts and image size,
    // so its tensor names must be exactly the fixture's (which transformers wrote).
    private static readonly ShapesTrainingOptions Quick = new()
    {
        Steps = 250,
        ImageSize = 32,
        TrainPairsPerTask = 80,
        HeldOutPairsPerTask = 40,
        BatchSize = 16,
        LearningRate = 3e-3,
        EvaluateEvery = 0,
        Model = new ShapesModelShape { HiddenSize = 32, Heads = 4, VisionLayers = 2, TextLayers = 2, MaxPositions = 16 },
    };

    [Fact]
    public void Vocabulary_is_exactly_the_words_of_generated_prompts_and_answers()
    {
        using var dir = new TempFolder();
        var tokens = BlipVocabularyWriter.Write(dir.Path, ShapesVocabulary.Words, modelMaxLength: 64);
        var tokenizer = BlipTokenizer.Load(dir.Path);
        Assert.Equal(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], tokens.Take(5));
        Assert.Equal((tokens.Count - 2, tokens.Count - 1), (tokenizer.DecId, tokenizer.EncId));
        Assert.Equal(("[DEC]", "[ENC]"), (tokens[^2], tokens[^1]));

        var report = ShapesTaskGenerator.Generate(dir["pairs"], ShapesTaskGenerator.Tasks, 100, imageSize: 16, seed: 3);
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var r in PairsManifest.Read(report.ManifestPath!))
        foreach (var text in new[] { r.Prompt, r.CorruptPrompt!, r.Answer, r.WrongAnswer })
        {
            var pieces = tokenizer.Tokenize(text);
            Assert.DoesNotContain("[UNK]", pieces);
            used.UnionWith(pieces);
        }
        Assert.Equal(ShapesVocabulary.Words.Order(StringComparer.Ordinal), used.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Short_training_learns_and_writes_a_checkpoint_transformers_and_BlipVqa_load()
    {
        using var dir = new TempFolder();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = ShapesTrainer.Train(dir.Path, Quick);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s; loss {result.MeanLoss(20):F3} -> {result.MeanLoss(-20):F3}; held-out {result.Accuracy}");

        Assert.True(result.MeanLoss(-20) < 0.6 * result.MeanLoss(20), $"loss {result.MeanLoss(20):F3} -> {result.MeanLoss(-20):F3}");
        // Two options: chance is 50%. Color and size are learned in a few hundred steps; shape takes longer.
        var accuracy = result.Accuracy.Tasks;
        Assert.True(accuracy.Values.Average(t => t.Accuracy) > 0.75, result.Accuracy.ToString());
        Assert.True(accuracy[ShapesTaskGenerator.ColorTask].Accuracy > 0.9, result.Accuracy.ToString());

        // The folder as save_pretrained / BlipProcessor.save_pretrained write it.
        foreach (var file in new[] { "config.json", "generation_config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                     "special_tokens_map.json", "preprocessor_config.json", ShapesAccuracy.FileName })
            Assert.True(File.Exists(dir[file]), file);
        using (var store = TensorStore.Open(dir.Path))
        using (var reference = TensorStore.Open(Fixtures.BlipTiny))
        {
            Assert.Equal(reference.Names.Order(StringComparer.Ordinal), store.Names.Order(StringComparer.Ordinal));
            Assert.All(store.Names, n => Assert.Equal("F32", store.Entry(n).DType));
        }
        var config = JsonNode.Parse(File.ReadAllText(dir["config.json"]))!;
        Assert.Equal("blip", (string?)config["model_type"]);
        Assert.Equal("BlipForQuestionAnswering", (string?)config["architectures"]![0]);
        var generation = JsonNode.Parse(File.ReadAllText(dir["generation_config.json"]))!;
        var tokens = File.ReadAllLines(dir["vocab.txt"]);
        Assert.Equal(tokens.Length - 2, (int)generation["bos_token_id"]!);
        Assert.Equal(3, (int)generation["eos_token_id"]!);
        Assert.Equal(tokens.Length, (int)config["text_config"]!["vocab_size"]!);
        var preprocessor = JsonNode.Parse(File.ReadAllText(dir["preprocessor_config.json"]))!;
        Assert.Equal((32, 32, 3), ((int)preprocessor["size"]!["height"]!, (int)preprocessor["size"]!["width"]!, (int)preprocessor["resample"]!));
        Assert.Equal("BlipImageProcessor", (string?)preprocessor["image_processor_type"]);

        // Loaded back, the model gives the same held-out answers as the one that was trained.
        using var vqa = BlipVqa.Load(dir.Path);
        using var heldOut = ShapesPairSet.Generate(Quick.Tasks, Quick.HeldOutPairsPerTask, Quick.ImageSize, Quick.HeldOutSeed, vqa.Tokenizer, vqa.ImageProcessor);
        var again = ShapesEvaluator.Evaluate(vqa.Model, vqa.Tokenizer, heldOut, Quick.HeldOutSeed);
        Assert.Equal(result.Accuracy.Tasks, again.Tasks);
        Assert.Equal(result.Accuracy.Tasks, ShapesAccuracy.Load(dir[ShapesAccuracy.FileName]).Tasks);
    }

    [Fact]
    public void Train_shapes_command_takes_the_documented_options()
    {
        var parse = TrainShapesCommand.Create().Parse("--out models/x --steps 10 --seed 3 --size 32 --train-pairs 50 --hidden 32 --heads 4 --text-layers 2 --vision-layers 2");
        Assert.Empty(parse.Errors);
        Assert.NotEmpty(TrainShapesCommand.Create().Parse("--steps 10").Errors);   // --out is required
    }
}

/// <summary>The committed built-in model, models/shapes-blip (trained by `notice train-shapes`).</summary>
[Collection(HeavyCpuCollection.Name)]
public sealed class ShapesBlipCheckpointTests(ITestOutputHelper output)
{
    private static string Folder => Path.Combine(Fixtures.Root, "models", "shapes-blip");

    // Pairs per task of the fresh test set: enough that one point of accuracy is several pairs.
    private const int FreshPairs = 300;
    private const int FreshSeed = 424242;

    [Fact]
    public void Reaches_its_recorded_accuracy_on_pairs_it_has_never_seen()
    {
        var recorded = ShapesAccuracy.Load(Path.Combine(Folder, ShapesAccuracy.FileName));
        Assert.NotEqual(FreshSeed, recorded.HeldOutSeed);
        Assert.NotEqual(FreshSeed, recorded.Training!.Seed);
        using var vqa = BlipVqa.Load(Folder);
        using var fresh = ShapesPairSet.Generate(ShapesTaskGenerator.Tasks, FreshPairs, recorded.ImageSize, FreshSeed, vqa.Tokenizer, vqa.ImageProcessor);
        var measured = ShapesEvaluator.Evaluate(vqa.Model, vqa.Tokenizer, fresh, FreshSeed);
        foreach (var (task, t) in measured.Tasks)
        {
            var r = recorded.Tasks[task];
            output.WriteLine($"{task}: accuracy {t.Accuracy:P1} (recorded {r.Accuracy:P1}), image flips {t.ImageFlipRate:P1} ({r.ImageFlipRate:P1}), text flips {t.TextFlipRate:P1} ({r.TextFlipRate:P1})");
            Assert.True(r.Accuracy >= 0.98, $"{task}: recorded accuracy {r.Accuracy:P1}");
            Assert.InRange(t.Accuracy, r.Accuracy - 0.02, 1.0);
            Assert.InRange(t.ImageFlipRate, r.ImageFlipRate - 0.03, 1.0);
            Assert.InRange(t.TextFlipRate, r.TextFlipRate - 0.03, 1.0);
        }
    }

    // Samples of the default run (Notice.AppHost's DefaultSamples: 80 per task). With fewer the shape
    // task's table is too noisy: at 24 per task L3H5 falls below its threshold there.
    private const int DefaultRunSamples = 240;

    /// <summary>
    /// What the default run finds (README): under image corruption self-attention head L3H5 is
    /// important (two sigma above its table's mean) in all three shapes tasks. The default run's
    /// pairs, made by the generator its coordinator calls (seed 0), patched the same way (every
    /// head of every layer at every position), in image mode alone.
    /// </summary>
    [Fact]
    public async Task Has_the_universal_vision_head_the_default_run_reports()
    {
        using var dir = new TempFolder();
        var tokenizer = BlipTokenizer.Load(Folder);
        var report = ShapesTaskGenerator.GenerateForRun(Path.Combine(dir.Path, "pairs"), DefaultRunSamples, seed: 0, w => tokenizer.Tokenize(w).Length);
        var spec = new ExperimentSpec
        {
            ModelDir = Folder,
            PairsPath = report.ManifestPath!,
            Modes = [CorruptionMode.Image],
            Sites = [new BlipFamily().Site("heads:attn")],
            Positions = PositionSelection.All,
        };
        var outDir = Path.Combine(dir.Path, "run");
        await new LocalRunner().RunAsync(spec, outDir, null, CancellationToken.None);
        var tables = HeadTable.FromResults(ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv)));
        foreach (var t in tables)
            output.WriteLine($"{t.Task}: mean {t.Mean:G3} std {t.Std:G3}, important {string.Join(", ", t.Important)}");
        var set = Assert.Single(UniversalHeads.Find(tables));
        Assert.Equal(ShapesTaskGenerator.Tasks.Order(), set.VisionTasks);
        Assert.Equal([new HeadId(3, 5)], set.Vision);
    }

    [Fact]
    public void Answers_fixed_generated_pairs_and_their_corrupt_images()
    {
        using var dir = new TempFolder();
        using var vqa = BlipVqa.Load(Folder);
        var size = vqa.ImageProcessor.Width;
        var report = ShapesTaskGenerator.Generate(dir.Path, ShapesTaskGenerator.Tasks, 4, size, seed: 7, w => vqa.Tokenizer.Tokenize(w).Length);
        foreach (var pair in PairsManifest.Read(report.ManifestPath!).Select(r => PairsManifest.Resolve(report.ManifestPath!, r)))
        {
            Assert.Equal(pair.Answer, vqa.Answer(pair.Image, pair.Prompt).Text);
            Assert.Equal(pair.WrongAnswer, vqa.Answer(pair.CorruptImage, pair.Prompt).Text);
            Assert.NotEqual(pair.Answer, vqa.Answer(pair.Image, pair.CorruptPrompt!).Text);
        }
    }

    [Fact]
    public void Is_a_small_float32_checkpoint_with_the_tensor_names_transformers_writes()
    {
        Assert.True(new FileInfo(Path.Combine(Folder, "model.safetensors")).Length < 8 << 20);
        // Same modules as the transformers-made fixture, at other depths.
        Assert.Equal(CheckpointNames.Folded(Fixtures.BlipTiny), CheckpointNames.Folded(Folder));
        using var store = TensorStore.Open(Folder);
        Assert.All(store.Names, n => Assert.Equal("F32", store.Entry(n).DType));
        var config = BlipConfig.Load(Path.Combine(Folder, "config.json"));
        var tokens = File.ReadAllLines(Path.Combine(Folder, "vocab.txt"));
        Assert.Equal((tokens.Length, tokens.Length - 2), (config.Text.VocabSize, config.Text.BosTokenId));
        Assert.Equal(ShapesVocabulary.Words, tokens[5..^2]);
    }
}
