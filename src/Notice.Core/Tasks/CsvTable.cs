using System.Globalization;
using CsvHelper;
using CsvHelper.Configuration;

namespace Notice.Core.Tasks;

/// <summary>
/// A dataset CSV read row by row with its header checked up front: missing columns are a
/// <see cref="TaskInputException"/> naming the file and every missing column; a row with too few
/// fields comes back with nulls, for the caller to skip and count. Column names match case-insensitively.
/// </summary>
internal sealed class CsvTable : IDisposable
{
    private readonly StreamReader _stream;
    private readonly CsvReader _csv;
    private readonly Dictionary<string, int> _columns;

    private CsvTable(string path, StreamReader stream, CsvReader csv, Dictionary<string, int> columns)
    {
        Path = path;
        _stream = stream;
        _csv = csv;
        _columns = columns;
    }

    public string Path { get; }

    /// <summary>Line in the file where the current row starts (1-based; the header is line 1).</summary>
    public int LineNumber { get; private set; }

    public static CsvTable Open(string path, IEnumerable<string> requiredColumns)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new TaskInputException(full, "file not found");
        var stream = new StreamReader(full);
        var config = new CsvConfiguration(CultureInfo.InvariantCulture)
        {
            MissingFieldFound = null, // short rows give nulls; the caller skips and counts them
            BadDataFound = null,      // a stray quote keeps the field as read, never stops the file
            DetectColumnCountChanges = false,
        };
        var csv = new CsvReader(stream, config);
        try
        {
            if (!csv.Read() || !csv.ReadHeader() || csv.HeaderRecord is not { Length: > 0 } header)
                throw new TaskInputException(full, "empty file: no header row");
            var columns = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
            for (var i = 0; i < header.Length; i++) columns.TryAdd(header[i].Trim(), i);
            var missing = requiredColumns.Where(c => !columns.ContainsKey(c)).ToList();
            if (missing.Count > 0)
                throw new TaskInputException(full,
                    $"missing column{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing)} (header has: {string.Join(", ", header)})",
                    1, missing[0]);
            return new CsvTable(full, stream, csv, columns);
        }
        catch
        {
            csv.Dispose();
            stream.Dispose();
            throw;
        }
    }

    public bool HasColumn(string name) => _columns.ContainsKey(name);

    /// <summary>Advances to the next row; false at the end of the file.</summary>
    public bool Read()
    {
        // Parser.RawRow counts physical lines read so far; a row starts after the previous row's lines.
        var before = _csv.Parser.RawRow;
        if (!_csv.Read()) return false;
        LineNumber = before + 1;
        return true;
    }

    /// <summary>The trimmed field of the current row, or null when the row is too short for it.</summary>
    public string? this[string column] =>
        _columns.TryGetValue(column, out var index) && index < _csv.Parser.Count ? _csv.Parser[index]?.Trim() : null;

    public void Dispose()
    {
        _csv.Dispose();
        _stream.Dispose();
    }
}
