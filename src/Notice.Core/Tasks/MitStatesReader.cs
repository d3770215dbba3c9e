namespace Notice.Core.Tasks;

/// <summary>Options of <see cref="MitStatesReader.Prepare"/>.</summary>
public sealed record MitStatesOptions
{
    /// <summary>Seeds the wrong answers, corrupt images and STR choices.</summary>
    public int Seed { get; init; }

    /// <summary>Word pieces per word under the model's tokenizer (default one), for STR.</summary>
    public Func<string, int>? TokenCount { get; init; }

    /// <summary>Categories and near-synonyms; default <see cref="MitStatesGroups.Default"/>.</summary>
    public MitStatesGroups? Groups { get; init; }

    /// <summary>
    /// Draw the wrong answer only from the clean state's own category (color against color). Off by
    /// default, as in the paper: any other state of the same noun that is not a near-synonym.
    /// </summary>
    public bool SameCategoryWrongAnswer { get; init; }

    /// <summary>The manifest's task name.</summary>
    public string Task { get; init; } = "mit-states";
}

/// <summary>
/// MIT-States (Isola et al., 2015) as a pairs manifest. The images live in
/// <c>images/&lt;adjective&gt; &lt;noun&gt;/</c>; every image of a known state is clean once, asked
/// "Is the &lt;noun&gt; &lt;adj1&gt; or &lt;adj2&gt;?" against another state of the same noun, and its corrupt
/// image is a random image of that noun in the wrong-answer state. Category: the clean state's.
/// </summary>
public static class MitStatesReader
{
    /// <summary>
    /// Reads <paramref name="datasetDir"/> (the dataset root holding <c>images/</c>, or that folder itself)
    /// and writes <c>pairs.jsonl</c> into <paramref name="outputDir"/>, image paths relative to it.
    /// Folders that are not "&lt;adjective&gt; &lt;noun&gt;" of a known state, unreadable images and images
    /// with no allowed wrong answer are skipped and counted.
    /// </summary>
    /// <exception cref="TaskInputException">The folder is missing or holds no usable images.</exception>
    public static TaskReport Prepare(string datasetDir, string outputDir, MitStatesOptions? options = null)
    {
        options ??= new MitStatesOptions();
        var groups = options.Groups ?? MitStatesGroups.Default;
        var tokenCount = options.TokenCount ?? TokenCount.OnePerWord;
        var report = new TaskReport(options.Task);
        Directory.CreateDirectory(outputDir);

        var root = Path.GetFullPath(datasetDir);
        if (!Directory.Exists(root)) throw new TaskInputException(root, "dataset folder not found");
        var imagesDir = Directory.Exists(Path.Combine(root, "images")) ? Path.Combine(root, "images") : root;

        // noun -> state -> images, all in ordinal order so that the same seed gives the same manifest anywhere.
        var byNoun = new SortedDictionary<string, SortedDictionary<string, List<string>>>(StringComparer.Ordinal);
        foreach (var folder in Directory.EnumerateDirectories(imagesDir).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(folder);
            var space = name.IndexOf(' ');
            var files = ImageFiles.List(folder);
            if (space <= 0 || space == name.Length - 1)
            {
                report.Skip(SkipReason.UnknownFolder, $"{folder}: not '<adjective> <noun>' ({files.Count} images)", files.Count);
                continue;
            }
            var (adjective, noun) = (name[..space].ToLowerInvariant(), name[(space + 1)..].Trim());
            if (!groups.CategoryOf.ContainsKey(adjective))
            {
                report.Skip(SkipReason.UnknownState, $"{folder}: '{adjective}' ({files.Count} images)", files.Count);
                continue;
            }
            var readable = new List<string>();
            foreach (var file in files)
            {
                if (ImageFiles.IsReadable(file)) readable.Add(file);
                else report.Skip(SkipReason.UnreadableImage, file);
            }
            if (readable.Count == 0) continue;
            if (!byNoun.TryGetValue(noun, out var states)) byNoun[noun] = states = new(StringComparer.Ordinal);
            if (states.TryGetValue(adjective, out var existing)) existing.AddRange(readable); // "Old apple" and "old apple"
            else states[adjective] = readable;
        }
        if (byNoun.Count == 0)
            throw new TaskInputException(imagesDir, $"no readable images in '<adjective> <noun>' folders of known states ({report})");

        var records = new List<PairRecord>();
        var index = 0;
        foreach (var (noun, states) in byNoun)
        {
            foreach (var (state, images) in states)
            {
                var category = groups.CategoryOf[state];
                var candidates = states.Keys
                    .Where(other => !groups.Synonyms.AreNear(state, other))
                    .Where(other => !options.SameCategoryWrongAnswer || groups.CategoryOf[other] == category)
                    .ToList();
                foreach (var image in images)
                {
                    if (candidates.Count == 0)
                    {
                        report.Skip(SkipReason.NoWrongAnswer, $"{image}: no other state of '{noun}' that is not a near-synonym of '{state}'");
                        continue;
                    }
                    var rng = StableSeed.Random(options.Seed, options.Task, index);
                    var wrong = candidates[rng.Next(candidates.Count)];
                    var corruptImages = states[wrong];
                    var corrupt = corruptImages[rng.Next(corruptImages.Count)];
                    var (first, second) = index % 2 == 0 ? (state, wrong) : (wrong, state);
                    records.Add(new PairRecord
                    {
                        Id = $"mit-{index:D6}", Task = options.Task, Category = category,
                        Image = PairsManifest.RelativePath(outputDir, image),
                        CorruptImage = PairsManifest.RelativePath(outputDir, corrupt),
                        Prompt = $"Is the {noun} {first} or {second}?",
                        Answer = state, WrongAnswer = wrong,
                    });
                    index++;
                }
            }
        }
        if (records.Count == 0)
            throw new TaskInputException(imagesDir, $"no image has an allowed wrong answer ({report})");
        return TaskOutput.Finish(records, report, outputDir, tokenCount, groups.Synonyms, options.Seed);
    }
}
