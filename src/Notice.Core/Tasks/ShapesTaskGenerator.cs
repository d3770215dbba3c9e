namespace Notice.Core.Tasks;

/// <summary>
/// The built-in synthetic tasks. Each pair is two images that differ in exactly one attribute of a
/// single object (its color, its shape or its size) with the same position, background and noise,
/// plus a mask of where they may differ; the question offers the clean image's attribute and the
/// corrupt image's. Everything is derived from the seed, the task name and the sample index, so the
/// same arguments give byte-identical PNGs and manifest, on any number of threads.
/// </summary>
public static class ShapesTaskGenerator
{
    public const string ColorTask = "shapes-color";
    public const string ShapeTask = "shapes-shape";
    public const string SizeTask = "shapes-size";

    /// <summary>All three tasks, in manifest order.</summary>
    public static IReadOnlyList<string> Tasks { get; } = [ColorTask, ShapeTask, SizeTask];

    /// <summary>Smallest image side: below it the small shapes are a few pixels wide.</summary>
    public const int MinImageSize = 16;

    /// <summary>Colors used as options (and as object colors in the other tasks).</summary>
    public static IReadOnlyList<string> Colors { get; } = [.. ShapeRenderer.Colors.Keys];

    /// <summary>Shape names used as options.</summary>
    public static IReadOnlyList<string> Shapes { get; } = ShapeRenderer.Shapes;

    /// <summary>The size task's two options: the clean image is one, the corrupt image the other.</summary>
    public static IReadOnlyList<string> Sizes { get; } = ["big", "small"];

    /// <summary>
    /// Replacement words for the size task's STR. There are only two sizes to ask about, so the corrupt
    /// prompt offers other size words; several lengths so that some pair matches any tokenizer.
    /// </summary>
    public static IReadOnlyList<string> SizeStrWords { get; } = ["large", "tiny", "huge", "little", "giant", "massive", "enormous", "miniature"];

    /// <summary>A task's question: {0} and {1} stand for the two options.</summary>
    /// <exception cref="ArgumentException">Unknown task.</exception>
    public static string PromptTemplate(string task) => Describe(task).Template;

    /// <summary>The words a task offers as options (the clean and corrupt images each show one).</summary>
    public static IReadOnlyList<string> Options(string task) => Describe(task).Options;

    /// <summary>The words the task's STR corrupt prompts offer instead of the options.</summary>
    public static IReadOnlyList<string> StrWords(string task) => Describe(task).StrWords;

    private static (string Category, string Template, IReadOnlyList<string> Options, IReadOnlyList<string> StrWords) Describe(string task) => task switch
    {
        ColorTask => ("color", "Is the shape {0} or {1}?", Colors, Colors),
        ShapeTask => ("shape", "Is the object a {0} or a {1}?", Shapes, Shapes),
        SizeTask => ("size", "Is the shape {0} or {1}?", Sizes, SizeStrWords),
        _ => throw new ArgumentException($"unknown shapes task '{task}' (known: {string.Join(", ", Tasks)})", nameof(task)),
    };

    // Noise amplitude (per channel, +-) and the background's gray range: objects of every color stand out.
    private const int NoiseAmplitude = 10;
    private const int BackgroundMin = 100, BackgroundMax = 156;

    /// <summary>
    /// Writes <c>img/&lt;id&gt;.png</c> (clean), <c>img/&lt;id&gt;-c.png</c> (corrupt), <c>img/&lt;id&gt;-m.png</c> (mask)
    /// and <c>pairs.jsonl</c> into <paramref name="outputDir"/>, <paramref name="countPerTask"/> pairs per task.
    /// The correct option comes first in every other sample. <paramref name="tokenCount"/> (word pieces per
    /// word under the model's tokenizer; default one) picks STR options of equal token length.
    /// </summary>
    /// <exception cref="ArgumentException">Unknown task, bad count or size.</exception>
    /// <remarks>
    /// Only option pairs with STR replacements of the same token lengths under <paramref name="tokenCount"/> are
    /// asked about, so a tokenizer that splits some color into more pieces than any other just never sees it as an option.
    /// </remarks>
    /// <exception cref="InvalidOperationException">No option pair of a task has such replacements.</exception>
    public static TaskReport Generate(
        string outputDir, IEnumerable<string> tasks, int countPerTask, int imageSize = 64, int seed = 0,
        Func<string, int>? tokenCount = null, CancellationToken cancellationToken = default)
    {
        var taskList = tasks.Distinct(StringComparer.Ordinal).ToList();
        if (taskList.Count == 0) throw new ArgumentException("no task given", nameof(tasks));
        foreach (var task in taskList)
            if (!Tasks.Contains(task))
                throw new ArgumentException($"unknown shapes task '{task}' (known: {string.Join(", ", Tasks)})", nameof(tasks));
        ArgumentOutOfRangeException.ThrowIfLessThan(countPerTask, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(imageSize, MinImageSize);
        tokenCount ??= TokenCount.OnePerWord;

        var imgDir = Path.Combine(outputDir, "img");
        Directory.CreateDirectory(imgDir);
        var digits = Math.Max(4, (countPerTask - 1).ToString(System.Globalization.CultureInfo.InvariantCulture).Length);

        var specs = taskList.ToDictionary(t => t, t => TaskSpec.For(t, tokenCount));
        var records = new PairRecord[taskList.Count * countPerTask];
        try
        {
            Parallel.For(0, records.Length, new ParallelOptions { CancellationToken = cancellationToken }, k =>
            {
                var task = taskList[k / countPerTask];
                records[k] = MakePair(outputDir, specs[task], k % countPerTask, digits, imageSize, seed);
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1)
        {
            // One failure (a full disk, say) reads better as itself than wrapped by the parallel loop.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
        }

        var manifest = Path.GetFullPath(Path.Combine(outputDir, PairsManifest.DefaultFileName));
        PairsManifest.Write(manifest, records);
        var report = new TaskReport(string.Join(",", taskList)) { ManifestPath = manifest, Written = records.Length };
        return report;
    }

    /// <summary>
    /// The pairs of a run of <paramref name="samples"/> samples on the shapes tasks (what the
    /// distributed run generates when it is given no manifest): every task, a third of the samples each
    /// (rounded up), 64x64, with the tasks interleaved in the manifest so that the first N samples
    /// take every task.
    /// </summary>
    public static TaskReport GenerateForRun(string outputDir, int samples, int seed, Func<string, int>? tokenCount = null)
    {
        int perTask = Math.Max(1, (samples + Tasks.Count - 1) / Tasks.Count);
        var report = Generate(outputDir, Tasks, perTask, imageSize: 64, seed, tokenCount);
        var interleaved = PairsManifest.Read(report.ManifestPath!)
            .GroupBy(r => r.Task).SelectMany(g => g.Select((r, i) => (r, i)))
            .OrderBy(x => x.i).ThenBy(x => x.r.Task, StringComparer.Ordinal).Select(x => x.r).ToList();
        PairsManifest.Write(report.ManifestPath!, interleaved);
        return report;
    }

    /// <summary><see cref="Generate"/> on the thread pool.</summary>
    public static Task<TaskReport> GenerateAsync(
        string outputDir, IEnumerable<string> tasks, int countPerTask, int imageSize = 64, int seed = 0,
        Func<string, int>? tokenCount = null, CancellationToken cancellationToken = default) =>
        System.Threading.Tasks.Task.Run(() => Generate(outputDir, tasks, countPerTask, imageSize, seed, tokenCount, cancellationToken), cancellationToken);

    private static PairRecord MakePair(string outputDir, TaskSpec spec, int index, int digits, int size, int seed)
    {
        var task = spec.Task;
        var rng = StableSeed.Random(seed, task, index);
        var id = $"{task}-{index.ToString($"D{digits}", System.Globalization.CultureInfo.InvariantCulture)}";

        // The object in the clean and the corrupt image: one attribute differs, the others are shared.
        var shape = Pick(rng, Shapes);
        var color = Pick(rng, Colors);
        var radius = Uniform(rng, 0.20, 0.30) * size;
        (string Shape, string Color, double Radius) clean = (shape, color, radius), corrupt = clean;
        string answer, wrong;
        switch (task)
        {
            case ColorTask:
                (answer, wrong) = spec.Pairs[rng.Next(spec.Pairs.Count)];
                clean.Color = answer;
                corrupt.Color = wrong;
                break;
            case ShapeTask:
                (answer, wrong) = spec.Pairs[rng.Next(spec.Pairs.Count)];
                clean.Shape = answer;
                corrupt.Shape = wrong;
                break;
            default:
                // Big and small each the answer in half the samples, crossed with the option order below.
                var answerBig = index / 2 % 2 == 0;
                var big = Uniform(rng, 0.32, 0.38) * size;
                var small = Uniform(rng, 0.12, 0.17) * size;
                (answer, wrong) = answerBig ? ("big", "small") : ("small", "big");
                clean.Radius = answerBig ? big : small;
                corrupt.Radius = answerBig ? small : big;
                break;
        }

        // Same center for both images, far enough from the border for the larger of the two objects.
        var margin = Math.Max(clean.Radius, corrupt.Radius) + 1;
        var cx = (float)Uniform(rng, margin, size - margin);
        var cy = (float)Uniform(rng, margin, size - margin);

        var correctFirst = index % 2 == 0;
        var (first, second) = correctFirst ? (answer, wrong) : (wrong, answer);
        var prompt = string.Format(System.Globalization.CultureInfo.InvariantCulture, spec.Template, first, second);
        var replacements = spec.Replacements[(first, second)];
        var (newFirst, newSecond) = replacements[rng.Next(replacements.Count)];
        OptionSlots.TryFind(prompt, answer, wrong, out var slots);
        var corruptPrompt = slots.Replace(prompt, newFirst, newSecond);

        // Background and noise are drawn once and shared, so only the object's pixels can differ.
        var background = (byte)rng.Next(BackgroundMin, BackgroundMax + 1);
        var noise = new sbyte[size * size * 3];
        var raw = new byte[noise.Length];
        rng.NextBytes(raw);
        for (var i = 0; i < raw.Length; i++) noise[i] = (sbyte)(raw[i] % (2 * NoiseAmplitude + 1) - NoiseAmplitude);

        var cleanCoverage = ShapeRenderer.Coverage(clean.Shape, cx, cy, (float)clean.Radius, size);
        var corruptCoverage = ShapeRenderer.Coverage(corrupt.Shape, cx, cy, (float)corrupt.Radius, size);
        var mask = new byte[size * size];
        for (var i = 0; i < mask.Length; i++) mask[i] = cleanCoverage[i] > 0 || corruptCoverage[i] > 0 ? (byte)255 : (byte)0;

        byte[] Render(byte[] coverage, string colorName)
        {
            var rgb = new byte[size * size * 3];
            Array.Fill(rgb, background);
            ShapeRenderer.Composite(rgb, coverage, ShapeRenderer.Colors[colorName]);
            ShapeRenderer.AddNoise(rgb, noise);
            return PngWriter.EncodeRgb(rgb, size);
        }

        var image = $"img/{id}.png";
        var corruptImage = $"img/{id}-c.png";
        var maskImage = $"img/{id}-m.png";
        File.WriteAllBytes(Path.Combine(outputDir, image), Render(cleanCoverage, clean.Color));
        File.WriteAllBytes(Path.Combine(outputDir, corruptImage), Render(corruptCoverage, corrupt.Color));
        File.WriteAllBytes(Path.Combine(outputDir, maskImage), PngWriter.EncodeGray(mask, size));

        return new PairRecord
        {
            Id = id, Task = task, Category = spec.Category,
            Image = image, CorruptImage = corruptImage, Mask = maskImage,
            Prompt = prompt, CorruptPrompt = corruptPrompt,
            Answer = answer, WrongAnswer = wrong,
        };
    }

    /// <summary>
    /// A task's wording and vocabulary, and which option pairs it may ask about: only pairs that have
    /// STR replacements (other words of the attribute with the same token lengths) under the model's
    /// tokenizer, so that every pair gets a token-aligned corrupt prompt whatever the tokenizer.
    /// </summary>
    private sealed record TaskSpec(
        string Task, string Category, string Template,
        IReadOnlyList<(string Answer, string Wrong)> Pairs,
        IReadOnlyDictionary<(string First, string Second), List<(string, string)>> Replacements)
    {
        public static TaskSpec For(string task, Func<string, int> tokenCount)
        {
            var (category, template, options, strWords) = Describe(task);
            var pairs = new List<(string, string)>();
            var replacements = new Dictionary<(string, string), List<(string, string)>>();
            foreach (var a in options)
            foreach (var b in options)
            {
                if (a == b) continue;
                int la = TokenCount.Of(a, tokenCount), lb = TokenCount.Of(b, tokenCount);
                var usable = strWords.Where(w => w != a && w != b).ToList();
                var combos = (from x in usable where TokenCount.Of(x, tokenCount) == la
                              from y in usable where y != x && TokenCount.Of(y, tokenCount) == lb
                              select (x, y)).ToList();
                if (combos.Count == 0) continue;
                pairs.Add((a, b));
                replacements[(a, b)] = combos;
            }
            // The size task always asks big against small, so both orders must work.
            var complete = task == SizeTask ? pairs.Count == 2 : pairs.Count > 0;
            if (!complete)
                throw new InvalidOperationException(
                    $"{task}: no STR replacements of equal token length among [{string.Join(", ", strWords)}] for the options " +
                    $"[{string.Join(", ", options.Select(o => $"{o} ({TokenCount.Of(o, tokenCount)})"))}] under this tokenizer");
            return new TaskSpec(task, category, template, pairs, replacements);
        }
    }

    private static string Pick(Random rng, IReadOnlyList<string> items) => items[rng.Next(items.Count)];

    private static double Uniform(Random rng, double min, double max) => min + (max - min) * rng.NextDouble();
}
