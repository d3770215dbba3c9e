using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Notice.Core.Tasks;

/// <summary>
/// Reads and writes pairs manifests: JSON Lines, one <see cref="PairRecord"/> per line, image paths
/// relative to the manifest's folder (written with '/', so a manifest reads the same on any OS).
/// </summary>
public static class PairsManifest
{
    /// <summary>The file name every task preparer writes into its output folder.</summary>
    public const string DefaultFileName = "pairs.jsonl";

    private static readonly JsonSerializerOptions WriteOptions = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        // Prompts stay readable in the file (no \u escapes for quotes or accented words).
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// Reads a manifest. Every problem throws <see cref="TaskInputException"/> naming the file, the line
    /// and the field: malformed JSON, a missing or non-string required field, a duplicate id, equal
    /// options, and (when <paramref name="checkImages"/>) an image, corrupt image or mask that does not exist.
    /// Blank lines are ignored. Paths in the returned records are as written (relative); use
    /// <see cref="Resolve(string, PairRecord)"/> or <see cref="ResolvePath"/> for absolute ones.
    /// </summary>
    public static IReadOnlyList<PairRecord> Read(string path, bool checkImages = true)
    {
        var fullPath = Path.GetFullPath(path);
        if (!File.Exists(fullPath))
            throw new TaskInputException(fullPath, "manifest file not found");
        var folder = Path.GetDirectoryName(fullPath)!;

        var records = new List<PairRecord>();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        var lineNumber = 0;
        foreach (var line in File.ReadLines(fullPath, Encoding.UTF8))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var record = ParseLine(fullPath, lineNumber, line);

            if (ids.TryGetValue(record.Id, out var firstLine))
                throw new TaskInputException(fullPath, $"duplicate id '{record.Id}' (first on line {firstLine})", lineNumber, "id");
            ids[record.Id] = lineNumber;

            if (string.Equals(record.Answer, record.WrongAnswer, StringComparison.OrdinalIgnoreCase))
                throw new TaskInputException(fullPath, $"equals answer '{record.Answer}'", lineNumber, "wrong_answer");

            if (checkImages)
            {
                CheckFile(fullPath, folder, lineNumber, "image", record.Image);
                CheckFile(fullPath, folder, lineNumber, "corrupt_image", record.CorruptImage);
                if (record.Mask is not null) CheckFile(fullPath, folder, lineNumber, "mask", record.Mask);
            }
            records.Add(record);
        }
        return records;
    }

    /// <summary>
    /// Writes a manifest (creating its folder), one record per line in the given order. Every record
    /// must have a corrupt prompt. Written to a temporary file first, so a reader never sees half a manifest.
    /// </summary>
    public static void Write(string path, IEnumerable<PairRecord> records)
    {
        var fullPath = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(fullPath)!);
        var temp = fullPath + ".tmp";
        using (var writer = new StreamWriter(temp, append: false, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false)))
        {
            writer.NewLine = "\n";
            foreach (var record in records)
            {
                if (record.CorruptPrompt is null)
                    throw new ArgumentException($"record '{record.Id}' has no corrupt_prompt; run StrCorruption.Assign first", nameof(records));
                writer.WriteLine(JsonSerializer.Serialize(Normalize(record), WriteOptions));
            }
        }
        File.Move(temp, fullPath, overwrite: true);
    }

    /// <summary>Absolute path of a manifest-relative path (an absolute path is returned as it is).</summary>
    public static string ResolvePath(string manifestPath, string relativePath)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(manifestPath))!;
        return ResolveIn(folder, relativePath);
    }

    /// <summary>The record with <see cref="PairRecord.Image"/>, <see cref="PairRecord.CorruptImage"/> and <see cref="PairRecord.Mask"/> made absolute.</summary>
    public static PairRecord Resolve(string manifestPath, PairRecord record)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(manifestPath))!;
        return record with
        {
            Image = ResolveIn(folder, record.Image),
            CorruptImage = ResolveIn(folder, record.CorruptImage),
            Mask = record.Mask is null ? null : ResolveIn(folder, record.Mask),
        };
    }

    /// <summary>The manifest-style path ('/' separators) of <paramref name="absolutePath"/> relative to <paramref name="manifestFolder"/>.</summary>
    public static string RelativePath(string manifestFolder, string absolutePath) =>
        Path.GetRelativePath(Path.GetFullPath(manifestFolder), Path.GetFullPath(absolutePath)).Replace('\\', '/');

    private static string ResolveIn(string folder, string path) =>
        Path.GetFullPath(Path.Combine(folder, path.Replace('/', Path.DirectorySeparatorChar)));

    private static PairRecord Normalize(PairRecord r) => r with
    {
        Image = r.Image.Replace('\\', '/'),
        CorruptImage = r.CorruptImage.Replace('\\', '/'),
        Mask = r.Mask?.Replace('\\', '/'),
    };

    private static void CheckFile(string manifest, string folder, int line, string field, string relative)
    {
        var full = ResolveIn(folder, relative);
        if (!File.Exists(full))
            throw new TaskInputException(manifest, $"file not found: {relative} ({full})", line, field);
    }

    // Parsed by hand from a JsonDocument rather than deserialized, so each problem names its field.
    private static PairRecord ParseLine(string file, int line, string text)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text);
        }
        catch (JsonException e)
        {
            throw new TaskInputException(file, $"malformed JSON: {e.Message}", line, inner: e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new TaskInputException(file, $"expected a JSON object, found {root.ValueKind}", line);

            string Required(string name)
            {
                if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
                    throw new TaskInputException(file, "missing required field", line, name);
                if (value.ValueKind != JsonValueKind.String)
                    throw new TaskInputException(file, $"must be a string, found {value.ValueKind}", line, name);
                var s = value.GetString()!;
                if (s.Trim().Length == 0)
                    throw new TaskInputException(file, "is empty", line, name);
                return s;
            }

            string? Optional(string name)
            {
                if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
                if (value.ValueKind != JsonValueKind.String)
                    throw new TaskInputException(file, $"must be a string, found {value.ValueKind}", line, name);
                var s = value.GetString()!;
                return s.Trim().Length == 0 ? null : s;
            }

            return new PairRecord
            {
                Id = Required("id"),
                Task = Required("task"),
                Category = Required("category"),
                Image = Required("image"),
                CorruptImage = Required("corrupt_image"),
                Mask = Optional("mask"),
                Prompt = Required("prompt"),
                CorruptPrompt = Required("corrupt_prompt"),
                Answer = Required("answer"),
                WrongAnswer = Required("wrong_answer"),
            };
        }
    }
}
