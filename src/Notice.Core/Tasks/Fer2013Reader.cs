using System.Globalization;

namespace Notice.Core.Tasks;

/// <summary>Options of <see cref="Fer2013Reader"/>.</summary>
public sealed record Fer2013Options
{
    /// <summary>Seeds the wrong answers, corrupt images and STR choices.</summary>
    public int Seed { get; init; }

    /// <summary>Word pieces per word under the model's tokenizer (default one), for STR.</summary>
    public Func<string, int>? TokenCount { get; init; }

    /// <summary>
    /// Let the wrong answer be any other emotion. Off by default: the wrong answer comes from the
    /// other valence group, so the two options are clearly different feelings (see <see cref="Fer2013Reader.WrongAnswerCandidates"/>).
    /// </summary>
    public bool AnyOtherEmotion { get; init; }

    /// <summary>CSV only: keep rows whose Usage column equals this (e.g. "Training", "PublicTest"); null keeps all.</summary>
    public string? Usage { get; init; }

    /// <summary>The manifest's task name.</summary>
    public string Task { get; init; } = "fer2013";
}

/// <summary>
/// FER-2013 facial expressions as a pairs manifest: "Is this person feeling &lt;a&gt; or &lt;b&gt;?", the
/// clean image a face showing the answer, the corrupt image a random face showing the wrong answer.
/// Reads the Kaggle CSV (48x48 grayscale pixels, written out as PNGs) or one folder per emotion.
/// Category: "emotion" for every pair, the attribute asked about (as "color" in the shapes tasks); the
/// answer itself tells the emotions apart, and one category lets STR draw from every other pair.
/// </summary>
public static class Fer2013Reader
{
    /// <summary>The emotions as the adjectives the questions use, indexed by the CSV's emotion code 0-6.</summary>
    public static IReadOnlyList<string> Emotions { get; } = ["angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral"];

    /// <summary>CSV image side: 48 x 48 = 2304 pixels.</summary>
    public const int CsvImageSize = 48;

    private static readonly HashSet<string> Positive = ["happy", "surprised"];
    private static readonly HashSet<string> Negative = ["angry", "disgusted", "fearful", "sad"];

    // Folder names seen in the wild, by emotion (Kaggle folder releases use the nouns).
    private static readonly Dictionary<string, string> FolderNames = new(StringComparer.OrdinalIgnoreCase)
    {
        ["angry"] = "angry", ["anger"] = "angry",
        ["disgust"] = "disgusted", ["disgusted"] = "disgusted",
        ["fear"] = "fearful", ["fearful"] = "fearful", ["afraid"] = "fearful",
        ["happy"] = "happy", ["happiness"] = "happy",
        ["sad"] = "sad", ["sadness"] = "sad",
        ["surprise"] = "surprised", ["surprised"] = "surprised",
        ["neutral"] = "neutral",
    };

    /// <summary>
    /// Emotions that may be the wrong answer when <paramref name="emotion"/> is right. By valence:
    /// positive {happy, surprised} against negative {angry, disgusted, fearful, sad}, and neutral against
    /// either (and either against neutral). With <paramref name="anyOther"/>, every other emotion.
    /// </summary>
    public static IReadOnlyList<string> WrongAnswerCandidates(string emotion, bool anyOther = false)
    {
        string Group(string e) => Positive.Contains(e) ? "positive" : Negative.Contains(e) ? "negative" : "neutral";
        if (!Emotions.Contains(emotion)) throw new ArgumentException($"unknown emotion '{emotion}'", nameof(emotion));
        return [.. Emotions.Where(e => e != emotion && (anyOther || Group(e) != Group(emotion)))];
    }

    /// <summary>Reads a CSV file or an emotion-folder tree, whichever <paramref name="source"/> is.</summary>
    public static TaskReport Prepare(string source, string outputDir, Fer2013Options? options = null) =>
        File.Exists(source) ? PrepareFromCsv(source, outputDir, options) : PrepareFromFolders(source, outputDir, options);

    /// <summary>
    /// Reads the Kaggle CSV (columns emotion 0-6, pixels = 2304 space-separated gray values, optional Usage),
    /// writes each usable face as <c>img/fer-&lt;row&gt;.png</c> under <paramref name="outputDir"/>, then
    /// <c>pairs.jsonl</c>. Rows with bad pixels or emotion codes are skipped and counted.
    /// </summary>
    /// <exception cref="TaskInputException">The file is missing, lacks the emotion or pixels column (or Usage when filtering), or has no usable row.</exception>
    public static TaskReport PrepareFromCsv(string csvPath, string outputDir, Fer2013Options? options = null)
    {
        options ??= new Fer2013Options();
        var report = new TaskReport(options.Task);
        var required = options.Usage is null ? new[] { "emotion", "pixels" } : ["emotion", "pixels", "Usage"];
        var imgDir = Path.Combine(outputDir, "img");
        Directory.CreateDirectory(imgDir);

        var faces = new List<(string Id, string Emotion, string Path)>();
        using (var table = CsvTable.Open(csvPath, required))
        {
            var gray = new byte[CsvImageSize * CsvImageSize];
            var row = 0;
            while (table.Read())
            {
                row++;
                var where = $"{table.Path}:{table.LineNumber}";
                if (options.Usage is not null && !string.Equals(table["Usage"], options.Usage, StringComparison.OrdinalIgnoreCase))
                {
                    report.Skip(SkipReason.OtherUsage);
                    continue;
                }
                if (!int.TryParse(table["emotion"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var code) || code < 0 || code >= Emotions.Count)
                {
                    report.Skip(SkipReason.UnknownEmotion, $"{where}: emotion '{table["emotion"]}' is not 0-6");
                    continue;
                }
                if (!TryParsePixels(table["pixels"], gray, out var problem))
                {
                    report.Skip(SkipReason.MalformedPixels, $"{where}: {problem}");
                    continue;
                }
                // The id and the image are named after the CSV row, so a pair can be traced back to its source.
                var id = $"fer-{row:D5}";
                var file = Path.Combine(imgDir, id + ".png");
                File.WriteAllBytes(file, PngWriter.EncodeGray(gray, CsvImageSize));
                faces.Add((id, Emotions[code], file));
            }
            if (faces.Count == 0) throw new TaskInputException(table.Path, $"no usable rows ({report})");
        }
        return Pair(faces, report, outputDir, options);
    }

    /// <summary>
    /// Reads one folder per emotion (angry or anger, disgust or disgusted, fear or fearful, happy, sad,
    /// surprise or surprised, neutral; case-insensitive) directly under <paramref name="rootDir"/>, e.g. a
    /// Kaggle release's <c>train/</c>. Other folders and unreadable images are skipped and counted.
    /// </summary>
    /// <exception cref="TaskInputException">The folder is missing or holds no readable face in an emotion folder.</exception>
    public static TaskReport PrepareFromFolders(string rootDir, string outputDir, Fer2013Options? options = null)
    {
        options ??= new Fer2013Options();
        var report = new TaskReport(options.Task);
        var root = Path.GetFullPath(rootDir);
        if (!Directory.Exists(root)) throw new TaskInputException(root, "neither a CSV file nor a folder");
        Directory.CreateDirectory(outputDir);

        var faces = new List<(string Id, string Emotion, string Path)>();
        foreach (var folder in Directory.EnumerateDirectories(root).Order(StringComparer.Ordinal))
        {
            var files = ImageFiles.List(folder);
            if (!FolderNames.TryGetValue(Path.GetFileName(folder), out var emotion))
            {
                report.Skip(SkipReason.UnknownFolder, $"{folder} ({files.Count} images)", files.Count);
                continue;
            }
            foreach (var file in files)
            {
                if (ImageFiles.IsReadable(file)) faces.Add(($"fer-{faces.Count:D6}", emotion, file));
                else report.Skip(SkipReason.UnreadableImage, file);
            }
        }
        if (faces.Count == 0)
            throw new TaskInputException(root,
                $"no readable images in emotion folders ({string.Join(", ", FolderNames.Keys)}) ({report})");
        return Pair(faces, report, outputDir, options);
    }

    private static TaskReport Pair(List<(string Id, string Emotion, string Path)> faces, TaskReport report, string outputDir, Fer2013Options options)
    {
        var byEmotion = faces.GroupBy(f => f.Emotion).ToDictionary(g => g.Key, g => g.Select(f => f.Path).ToList());
        var records = new List<PairRecord>();
        for (var i = 0; i < faces.Count; i++)
        {
            var (id, emotion, image) = faces[i];
            var candidates = WrongAnswerCandidates(emotion, options.AnyOtherEmotion).Where(byEmotion.ContainsKey).ToList();
            if (candidates.Count == 0)
            {
                report.Skip(SkipReason.NoWrongAnswer, $"{image}: no face showing an allowed wrong answer for '{emotion}'");
                continue;
            }
            var rng = StableSeed.Random(options.Seed, options.Task, i);
            var wrong = candidates[rng.Next(candidates.Count)];
            var corrupt = byEmotion[wrong][rng.Next(byEmotion[wrong].Count)];
            var (first, second) = records.Count % 2 == 0 ? (emotion, wrong) : (wrong, emotion);
            records.Add(new PairRecord
            {
                Id = id, Task = options.Task, Category = "emotion",
                Image = PairsManifest.RelativePath(outputDir, image),
                CorruptImage = PairsManifest.RelativePath(outputDir, corrupt),
                Prompt = $"Is this person feeling {first} or {second}?",
                Answer = emotion, WrongAnswer = wrong,
            });
        }
        if (records.Count == 0)
            throw new TaskInputException(Path.GetFullPath(outputDir), $"no face has an allowed wrong answer ({report})");
        return TaskOutput.Finish(records, report, outputDir, options.TokenCount ?? TokenCount.OnePerWord, NearSynonyms.None, options.Seed);
    }

    /// <summary>Parses exactly 2304 space-separated integers 0-255 into <paramref name="gray"/>.</summary>
    internal static bool TryParsePixels(string? text, byte[] gray, out string problem)
    {
        problem = "";
        if (text is null)
        {
            problem = "no pixels field";
            return false;
        }
        var span = text.AsSpan();
        var count = 0;
        foreach (var range in span.SplitAny(' ', '\t'))
        {
            var token = span[range];
            if (token.IsEmpty) continue;
            if (count == gray.Length)
            {
                problem = $"more than {gray.Length} pixel values";
                return false;
            }
            if (!int.TryParse(token, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < 0 || v > 255)
            {
                problem = $"pixel {count} is '{token}', not 0-255";
                return false;
            }
            gray[count++] = (byte)v;
        }
        if (count != gray.Length)
        {
            problem = $"{count} pixel values, expected {gray.Length}";
            return false;
        }
        return true;
    }
}
