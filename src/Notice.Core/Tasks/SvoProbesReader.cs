namespace Notice.Core.Tasks;

/// <summary>Options of <see cref="SvoProbesReader.Prepare"/>.</summary>
public sealed record SvoProbesOptions
{
    /// <summary>Seeds the option order of each row and the STR choices.</summary>
    public int Seed { get; init; }

    /// <summary>Word pieces per word under the model's tokenizer (default one), for STR.</summary>
    public Func<string, int>? TokenCount { get; init; }

    /// <summary>Words that may not be each other's STR replacement, and rows whose two options are near-synonyms are skipped.</summary>
    public NearSynonyms? Synonyms { get; init; }

    /// <summary>
    /// Rows offering one of these words are skipped: "person" against "man" or "woman" has no single
    /// right answer (the paper drops these rows too).
    /// </summary>
    public IReadOnlyCollection<string> ExcludedOptions { get; init; } = ["person"];

    /// <summary>The manifest's task name.</summary>
    public string Task { get; init; } = "svo-probes";
}

/// <summary>
/// SVO-Probes (Hendricks and Nematzadeh, 2021) as a pairs manifest. Each CSV row is a sentence
/// with a positive and a negative image whose subject-verb-object triplets differ in one element.
/// Each row gives two pairs, as in the paper: the positive image clean (answer: its element) with
/// the negative image as corruption, and the reverse; both ask the same question, so the correct
/// option is first in one and second in the other. Category: subject, verb or object.
/// </summary>
public static class SvoProbesReader
{
    /// <summary>Columns the CSV must have.</summary>
    public static IReadOnlyList<string> Columns { get; } =
        ["sentence", "pos_triplet", "neg_triplet", "subj_neg", "verb_neg", "obj_neg", "pos_url", "neg_url", "pos_image_id", "neg_image_id"];

    private static readonly string[] Categories = ["subject", "verb", "object"];

    /// <summary>
    /// Reads <paramref name="csvPath"/>, finds each row's images in <paramref name="imageDir"/> (searched
    /// recursively) by image id (<c>&lt;id&gt;.jpg</c>, <c>.png</c>, ...) or by the file name at the end of the
    /// URL, and writes <c>pairs.jsonl</c> into <paramref name="outputDir"/> with paths relative to it.
    /// Rows that cannot make a valid question (missing or unreadable images, malformed triplets, unclear
    /// flags, duplicates) are skipped and counted in the report, never fatal.
    /// </summary>
    /// <exception cref="TaskInputException">The CSV is missing or lacks columns; the image folder is missing or has no images; no row gives a pair.</exception>
    public static TaskReport Prepare(string csvPath, string imageDir, string outputDir, SvoProbesOptions? options = null)
    {
        options ??= new SvoProbesOptions();
        var tokenCount = options.TokenCount ?? TokenCount.OnePerWord;
        var synonyms = options.Synonyms ?? NearSynonyms.None;
        var excluded = new HashSet<string>(options.ExcludedOptions, StringComparer.OrdinalIgnoreCase);
        var report = new TaskReport(options.Task);
        var images = new ImageIndex(imageDir);
        Directory.CreateDirectory(outputDir);

        var records = new List<PairRecord>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using var table = CsvTable.Open(csvPath, Columns);
        var row = 0;
        while (table.Read())
        {
            row++;
            var where = $"{table.Path}:{table.LineNumber}";
            if (Columns.Any(c => table[c] is null))
            {
                report.Skip(SkipReason.MalformedRow, $"{where}: too few fields");
                continue;
            }
            if (!TryParseTriplet(table["pos_triplet"]!, out var pos) || !TryParseTriplet(table["neg_triplet"]!, out var neg))
            {
                report.Skip(SkipReason.MalformedTriplet, $"{where}: '{table["pos_triplet"]}' / '{table["neg_triplet"]}'");
                continue;
            }
            if (!TryParseBool(table["subj_neg"]!, out var subjNeg) || !TryParseBool(table["verb_neg"]!, out var verbNeg) ||
                !TryParseBool(table["obj_neg"]!, out var objNeg))
            {
                report.Skip(SkipReason.MalformedRow, $"{where}: subj_neg/verb_neg/obj_neg must be booleans");
                continue;
            }
            bool[] flags = [subjNeg, verbNeg, objNeg];
            if (flags.Count(f => f) != 1)
            {
                report.Skip(SkipReason.AmbiguousNegation, $"{where}: subj_neg={subjNeg} verb_neg={verbNeg} obj_neg={objNeg}");
                continue;
            }
            var k = Array.IndexOf(flags, true);
            var differs = Enumerable.Range(0, 3).Select(i => !string.Equals(pos[i], neg[i], StringComparison.OrdinalIgnoreCase)).ToArray();
            if (!differs[k] || differs.Count(d => d) != 1)
            {
                report.Skip(SkipReason.TripletMismatch, $"{where}: {string.Join(",", pos)} vs {string.Join(",", neg)} with {Categories[k]} flagged");
                continue;
            }
            if (excluded.Contains(pos[k]) || excluded.Contains(neg[k]) || synonyms.AreNear(pos[k], neg[k]))
            {
                report.Skip(SkipReason.ExcludedOption, $"{where}: '{pos[k]}' / '{neg[k]}'");
                continue;
            }

            var posImage = images.Find(table["pos_image_id"]!, table["pos_url"]!);
            var negImage = images.Find(table["neg_image_id"]!, table["neg_url"]!);
            if (posImage is null || negImage is null)
            {
                var which = posImage is null ? $"pos {table["pos_image_id"]} {table["pos_url"]}" : $"neg {table["neg_image_id"]} {table["neg_url"]}";
                report.Skip(SkipReason.MissingImage, $"{where}: no file for {which} in {images.Folder}");
                continue;
            }
            if (posImage == negImage)
            {
                report.Skip(SkipReason.SameImage, $"{where}: {posImage}");
                continue;
            }
            var unreadable = !images.IsReadable(posImage) ? posImage : !images.IsReadable(negImage) ? negImage : null;
            if (unreadable is not null)
            {
                report.Skip(SkipReason.UnreadableImage, $"{where}: {unreadable}");
                continue;
            }

            var category = Categories[k];
            var subject = pos[0];
            var verb = EnglishVerbs.Gerund(pos[1]);
            var obj = pos[2];
            // Verbs are asked about in their -ing form, so the answer is the word the prompt offers.
            var (posOption, negOption) = k == 1 ? (EnglishVerbs.Gerund(pos[1]), EnglishVerbs.Gerund(neg[1])) : (pos[k], neg[k]);
            var key = $"{category}|{string.Join("|", new[] { posOption, negOption }.Order(StringComparer.OrdinalIgnoreCase))}|{string.Join("|", new[] { posImage, negImage }.Order(StringComparer.Ordinal))}";
            if (!seen.Add(key.ToLowerInvariant()))
            {
                report.Skip(SkipReason.Duplicate, $"{where}: same images and options as an earlier row");
                continue;
            }

            // The option order is random per row; the two pairs of the row then put the correct option first once each.
            var rng = StableSeed.Random(options.Seed, options.Task, row);
            var (first, second) = rng.Next(2) == 0 ? (posOption, negOption) : (negOption, posOption);
            var prompt = category switch
            {
                "subject" => $"Is the {first} or the {second} {verb} the {obj}?",
                "verb" => $"Is the {subject} {first} or {second} the {obj}?",
                _ => $"Is the {subject} {verb} the {first} or the {second}?",
            };
            var id = $"svo-{row:D6}";
            var posRelative = PairsManifest.RelativePath(outputDir, posImage);
            var negRelative = PairsManifest.RelativePath(outputDir, negImage);
            records.Add(new PairRecord
            {
                Id = id + "-pos", Task = options.Task, Category = category, Image = posRelative, CorruptImage = negRelative,
                Prompt = prompt, Answer = posOption, WrongAnswer = negOption,
            });
            records.Add(new PairRecord
            {
                Id = id + "-neg", Task = options.Task, Category = category, Image = negRelative, CorruptImage = posRelative,
                Prompt = prompt, Answer = negOption, WrongAnswer = posOption,
            });
        }

        if (records.Count == 0)
            throw new TaskInputException(table.Path, $"no usable rows ({report})");
        return TaskOutput.Finish(records, report, outputDir, tokenCount, synonyms, options.Seed);
    }

    /// <summary>
    /// "man,ride,horse", also as the dataset sometimes stores it, a list literal "['man,ride,horse']"
    /// (its first element is used). Exactly three non-empty elements; underscores read as spaces.
    /// </summary>
    public static bool TryParseTriplet(string text, out string[] triplet)
    {
        triplet = [];
        var s = text.Trim();
        if (s.StartsWith('[') && s.EndsWith(']'))
        {
            s = s[1..^1].Trim();
            // A list of several triplets: "'a,b,c', 'd,e,f'"; keep the first.
            var quote = s.Length > 0 && (s[0] == '\'' || s[0] == '"') ? s[0] : '\0';
            if (quote != '\0')
            {
                var close = s.IndexOf(quote, 1);
                if (close < 0) return false;
                s = s[1..close];
            }
        }
        var parts = s.Split(',').Select(p => p.Trim().Trim('\'', '"').Replace('_', ' ').Trim()).ToArray();
        if (parts.Length != 3 || parts.Any(p => p.Length == 0)) return false;
        triplet = parts;
        return true;
    }

    internal static bool TryParseBool(string text, out bool value)
    {
        switch (text.Trim().ToLowerInvariant())
        {
            case "true" or "1" or "yes" or "t" or "1.0": value = true; return true;
            case "false" or "0" or "no" or "f" or "0.0": value = false; return true;
            default: value = false; return false;
        }
    }

    /// <summary>The image folder's files by name and by name without extension, for lookups by id or URL.</summary>
    private sealed class ImageIndex
    {
        private readonly Dictionary<string, string> _byName = new(StringComparer.OrdinalIgnoreCase);
        private readonly Dictionary<string, string> _byStem = new(StringComparer.OrdinalIgnoreCase);
        private readonly Dictionary<string, bool> _readable = new(StringComparer.Ordinal);

        public ImageIndex(string folder)
        {
            Folder = Path.GetFullPath(folder);
            if (!Directory.Exists(Folder)) throw new TaskInputException(Folder, "image folder not found");
            foreach (var file in Directory.EnumerateFiles(Folder, "*", SearchOption.AllDirectories).Where(ImageFiles.HasImageExtension).Order(StringComparer.Ordinal))
            {
                _byName.TryAdd(Path.GetFileName(file), file);
                _byStem.TryAdd(Path.GetFileNameWithoutExtension(file), file);
            }
            if (_byName.Count == 0)
                throw new TaskInputException(Folder, $"no images ({string.Join(", ", ImageFiles.Extensions)}) in the image folder");
        }

        public string Folder { get; }

        public string? Find(string imageId, string url)
        {
            if (imageId.Length > 0 && (_byStem.TryGetValue(imageId, out var p) || _byName.TryGetValue(imageId, out p))) return p;
            var name = UrlFileName(url);
            if (name is null) return null;
            return _byName.TryGetValue(name, out p) || _byStem.TryGetValue(Path.GetFileNameWithoutExtension(name), out p) ? p : null;
        }

        public bool IsReadable(string path)
        {
            if (!_readable.TryGetValue(path, out var ok)) _readable[path] = ok = ImageFiles.IsReadable(path);
            return ok;
        }

        private static string? UrlFileName(string url)
        {
            if (url.Length == 0) return null;
            var path = Uri.TryCreate(url, UriKind.Absolute, out var uri) ? uri.AbsolutePath : url.Split('?', '#')[0];
            var name = Uri.UnescapeDataString(path.TrimEnd('/').Split('/')[^1]);
            return name.Length == 0 ? null : name;
        }
    }
}
