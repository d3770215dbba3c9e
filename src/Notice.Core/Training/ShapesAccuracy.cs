using System.Text.Json;
using System.Text.Json.Serialization;
using Notice.Core.Tasks;
using Notice.Vlm.Blip;
using Notice.Vlm.Text;
using TorchSharp;

namespace Notice.Core.Training;

/// <summary>How a model does on one task's held-out pairs, answering greedily (exact match).</summary>
public sealed record ShapesTaskAccuracy
{
    [JsonPropertyName("pairs")] public required int Pairs { get; init; }

    /// <summary>Clean image and prompt answered with the answer.</summary>
    [JsonPropertyName("accuracy")] public required double Accuracy { get; init; }

    /// <summary>Corrupt image and prompt answered with the wrong answer (the corrupt image shows it).</summary>
    [JsonPropertyName("corrupt_image_accuracy")] public required double CorruptImageAccuracy { get; init; }

    /// <summary>Pairs answered correctly when clean whose corrupt image gets another answer: usable for image (SIP) patching.</summary>
    [JsonPropertyName("image_flip_rate")] public required double ImageFlipRate { get; init; }

    /// <summary>Pairs answered correctly when clean whose corrupt (STR) prompt gets another answer: usable for text patching.</summary>
    [JsonPropertyName("text_flip_rate")] public required double TextFlipRate { get; init; }

    /// <summary>The share of the three inputs of a pair (clean, corrupt image, corrupt prompt) the model still gets wrong.</summary>
    [JsonIgnore] public double Error => 1 - (Accuracy + CorruptImageAccuracy + TextFlipRate) / 3;
}

/// <summary>Held-out accuracy per task, and what it was measured on: a checkpoint's accuracy.json.</summary>
public sealed record ShapesAccuracy
{
    public const string FileName = "accuracy.json";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Seed of the held-out pairs (training pairs use another).</summary>
    [JsonPropertyName("held_out_seed")] public required int HeldOutSeed { get; init; }

    [JsonPropertyName("image_size")] public required int ImageSize { get; init; }

    [JsonPropertyName("tasks")] public required IReadOnlyDictionary<string, ShapesTaskAccuracy> Tasks { get; init; }

    /// <summary>How the model was trained; absent for an evaluation of someone else's model.</summary>
    [JsonPropertyName("training")] public ShapesTrainingSummary? Training { get; init; }

    [JsonIgnore] public double MinAccuracy => Tasks.Values.Min(t => t.Accuracy);

    public void Save(string path) => File.WriteAllText(path, JsonSerializer.Serialize(this, Json) + "\n");

    public static ShapesAccuracy Load(string path) =>
        JsonSerializer.Deserialize<ShapesAccuracy>(File.ReadAllText(path), Json) ?? throw new InvalidDataException($"{path}: empty");

    /// <summary>One line: accuracy per task, e.g. "color 99.5% shape 98.0% size 100.0%".</summary>
    public override string ToString() =>
        string.Join("  ", Tasks.Select(t => $"{t.Key.Replace("shapes-", "")} {t.Value.Accuracy:P1}"));
}

/// <summary>The training run behind a checkpoint, recorded in its accuracy.json.</summary>
public sealed record ShapesTrainingSummary
{
    [JsonPropertyName("seed")] public required int Seed { get; init; }
    [JsonPropertyName("steps")] public required int Steps { get; init; }
    [JsonPropertyName("batch_size")] public required int BatchSize { get; init; }
    [JsonPropertyName("train_pairs_per_task")] public required int TrainPairsPerTask { get; init; }
    /// <summary>The training objective (answer loss plus the attribute probe's) averaged over the last 100 steps.</summary>
    [JsonPropertyName("final_loss")] public required double FinalLoss { get; init; }
}

/// <summary>Measures <see cref="ShapesAccuracy"/>: greedy generation, as <see cref="BlipVqa.AnswerBatch"/> answers.</summary>
public static class ShapesEvaluator
{
    /// <summary>Accuracy on the pairs of <paramref name="set"/> (all, or those listed in <paramref name="subset"/>),
    /// which were generated with <paramref name="pairsSeed"/>.</summary>
    public static ShapesAccuracy Evaluate(BlipForQuestionAnswering model, BlipTokenizer tokenizer, ShapesPairSet set, int pairsSeed,
        IReadOnlyList<int>? subset = null, int batchSize = 128)
    {
        var pairs = subset ?? Enumerable.Range(0, set.Count).ToList();
        // Answers by position in pairs; each pair's index in the set is pairs[k].
        var clean = Answer(model, tokenizer, set.Pixels, pairs.Select(i => (ShapesPairSet.CleanImage(i), set.Prompts[i])).ToList(), batchSize);
        var corruptImage = Answer(model, tokenizer, set.Pixels, pairs.Select(i => (ShapesPairSet.CorruptImage(i), set.Prompts[i])).ToList(), batchSize);
        var corruptPrompt = Answer(model, tokenizer, set.Pixels, pairs.Select(i => (ShapesPairSet.CleanImage(i), set.CorruptPrompts[i])).ToList(), batchSize);

        var tasks = new Dictionary<string, ShapesTaskAccuracy>(StringComparer.Ordinal);
        foreach (var group in Enumerable.Range(0, pairs.Count).GroupBy(k => set.Records[pairs[k]].Task))
        {
            var ks = group.ToList();
            PairRecord Record(int k) => set.Records[pairs[k]];
            bool Correct(int k) => SampleSelector.IsExactMatch(clean[k], Record(k).Answer);
            double Fraction(Func<int, bool> f) => (double)ks.Count(f) / ks.Count;
            tasks[group.Key] = new ShapesTaskAccuracy
            {
                Pairs = ks.Count,
                Accuracy = Fraction(Correct),
                CorruptImageAccuracy = Fraction(k => SampleSelector.IsExactMatch(corruptImage[k], Record(k).WrongAnswer)),
                ImageFlipRate = Fraction(k => Correct(k) && !SampleSelector.IsExactMatch(corruptImage[k], Record(k).Answer)),
                TextFlipRate = Fraction(k => Correct(k) && !SampleSelector.IsExactMatch(corruptPrompt[k], Record(k).Answer)),
            };
        }
        var size = (int)set.Pixels.shape[^1];
        return new ShapesAccuracy { HeldOutSeed = pairsSeed, ImageSize = size, Tasks = tasks };
    }

    /// <summary>Greedy answers to (image row of <paramref name="pixels"/>, encoded question) inputs, in padded batches.</summary>
    public static string[] Answer(BlipForQuestionAnswering model, BlipTokenizer tokenizer, torch.Tensor pixels,
        IReadOnlyList<(long Image, int[] Prompt)> inputs, int batchSize = 128)
    {
        var answers = new List<string>(inputs.Count);
        foreach (var chunk in inputs.Chunk(batchSize))
        {
            using var scope = torch.NewDisposeScope();
            using var rows = torch.tensor(chunk.Select(c => c.Image).ToArray());
            var (ids, mask) = tokenizer.PadBatch(chunk.Select(c => c.Prompt).ToList());
            var generated = model.Generate(pixels.index_select(0, rows), torch.tensor(ids), torch.tensor(mask));
            answers.AddRange(generated.Select(g => tokenizer.Decode(g.Select(i => (int)i))));
        }
        return answers.ToArray();
    }
}
