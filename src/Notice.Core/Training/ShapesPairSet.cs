using Notice.Core.Tasks;
using Notice.Vlm.Processing;
using Notice.Vlm.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Core.Training;

/// <summary>
/// Shapes pairs ready for a BLIP model: every image preprocessed once into one tensor (training
/// reads it hundreds of times), every prompt tokenised once.
/// </summary>
public sealed class ShapesPairSet : IDisposable
{
    // Images decoded and preprocessed per chunk, so the float copies never hold the whole set twice.
    private const int PreprocessChunk = 512;

    public IReadOnlyList<PairRecord> Records { get; }

    /// <summary>pixel_values [2N, 3, H, W]: pair i's clean image at 2i, its corrupt image at 2i + 1.</summary>
    public Tensor Pixels { get; }

    /// <summary>Each pair's prompt as input ids ([CLS] ... [SEP]).</summary>
    public IReadOnlyList<int[]> Prompts { get; }

    /// <summary>Each pair's STR prompt as input ids: the same length, other option words.</summary>
    public IReadOnlyList<int[]> CorruptPrompts { get; }

    public int Count => Records.Count;

    private ShapesPairSet(IReadOnlyList<PairRecord> records, Tensor pixels, IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> corruptPrompts)
    {
        Records = records; Pixels = pixels; Prompts = prompts; CorruptPrompts = corruptPrompts;
    }

    public static long CleanImage(int pair) => 2L * pair;

    public static long CorruptImage(int pair) => 2L * pair + 1;

    /// <summary>
    /// Renders <paramref name="pairsPerTask"/> pairs of each task with <see cref="ShapesTaskGenerator"/>
    /// into a temporary folder, reads them in and deletes the folder.
    /// </summary>
    public static ShapesPairSet Generate(
        IEnumerable<string> tasks, int pairsPerTask, int imageSize, int seed,
        BlipTokenizer tokenizer, BlipImageProcessor processor, CancellationToken cancellationToken = default)
    {
        var folder = Path.Combine(Path.GetTempPath(), "notice-shapes-" + Guid.NewGuid().ToString("N"));
        try
        {
            // Options and STR words are chosen with the model's own token lengths, as `notice prepare shapes --model` does.
            var report = ShapesTaskGenerator.Generate(folder, tasks, pairsPerTask, imageSize, seed,
                w => tokenizer.Tokenize(w).Length, cancellationToken);
            return Load(report.ManifestPath!, tokenizer, processor, cancellationToken);
        }
        finally
        {
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Reads a pairs manifest (every pair must have a corrupt prompt of the prompt's token length).</summary>
    public static ShapesPairSet Load(string manifestPath, BlipTokenizer tokenizer, BlipImageProcessor processor, CancellationToken cancellationToken = default)
    {
        var records = PairsManifest.Read(manifestPath).Select(r => PairsManifest.Resolve(manifestPath, r)).ToList();
        if (records.Count == 0) throw new TaskInputException(manifestPath, "no pairs");
        var prompts = records.Select(r => tokenizer.Encode(r.Prompt)).ToList();
        var corruptPrompts = records.Select(r => tokenizer.Encode(r.CorruptPrompt!)).ToList();
        for (var i = 0; i < records.Count; i++)
            if (prompts[i].Length != corruptPrompts[i].Length)
                throw new TaskInputException(manifestPath, $"pair {records[i].Id}: the corrupt prompt has {corruptPrompts[i].Length} tokens, the prompt {prompts[i].Length}");

        var paths = records.SelectMany(r => new[] { r.Image, r.CorruptImage }).ToList();
        var pixels = torch.empty(paths.Count, 3, processor.Height, processor.Width);
        try
        {
            for (var start = 0; start < paths.Count; start += PreprocessChunk)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var chunk = paths.Skip(start).Take(PreprocessChunk).ToList();
                var images = new RgbImage[chunk.Count];
                Parallel.For(0, chunk.Count, k => images[k] = ImageDecoder.Load(chunk[k]));
                using var values = processor.Preprocess(images);
                using var slot = pixels.narrow(0, start, chunk.Count);
                slot.copy_(values);
            }
        }
        catch
        {
            pixels.Dispose();
            throw;
        }
        return new ShapesPairSet(records, pixels, prompts, corruptPrompts);
    }

    public void Dispose() => Pixels.Dispose();
}
