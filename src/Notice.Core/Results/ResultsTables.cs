using System.Globalization;
using CsvHelper;
using CsvHelper.Configuration;
using Parquet.Serialization;

namespace Notice.Core.Results;

/// <summary>
/// CSV and Parquet files of results rows. CSV columns are snake_case (design.md §6); the same
/// names are used in Parquet. Tables and figures are derived from these files only.
/// </summary>
public static class ResultsTables
{
    public const string ResultsCsv = "results.csv";
    public const string ResultsParquet = "results.parquet";
    public const string BaselinesCsv = "baselines.csv";
    public const string FailuresCsv = "failures.csv";

    private static CsvConfiguration Config => new(CultureInfo.InvariantCulture)
    {
        PrepareHeaderForMatch = a => a.Header.Replace("_", "").ToLowerInvariant(),
    };

    private sealed class SnakeCaseMap<T> : ClassMap<T>
    {
        public SnakeCaseMap()
        {
            AutoMap(CultureInfo.InvariantCulture);
            foreach (var m in MemberMaps) m.Name(SnakeCase(m.Data.Member!.Name));
        }
    }

    public static string SnakeCase(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    /// <summary>Appends rows (writing the header when the file is new) and flushes them to disk.</summary>
    public static void Append<T>(string path, IEnumerable<T> rows)
    {
        bool exists = File.Exists(path) && new FileInfo(path).Length > 0;
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        using var writer = new StreamWriter(stream);
        using var csv = new CsvWriter(writer, Config);
        csv.Context.RegisterClassMap<SnakeCaseMap<T>>();
        if (!exists)
        {
            csv.WriteHeader<T>();
            csv.NextRecord();
        }
        foreach (var row in rows)
        {
            // Row by row: WriteRecords would add a header to every append.
            csv.WriteRecord(row);
            csv.NextRecord();
        }
        writer.Flush();
        stream.Flush(flushToDisk: true);
    }

    public static void Write<T>(string path, IEnumerable<T> rows)
    {
        var tmp = path + ".tmp";
        File.Delete(tmp);
        Append(tmp, rows);
        File.Move(tmp, path, overwrite: true);
    }

    public static List<T> Read<T>(string path)
    {
        if (!File.Exists(path)) return new List<T>();
        using var reader = new StreamReader(path);
        using var csv = new CsvReader(reader, Config);
        csv.Context.RegisterClassMap<SnakeCaseMap<T>>();
        try { return csv.GetRecords<T>().ToList(); }
        catch (CsvHelperException e) { throw new InvalidDataException($"{path}: unreadable results table: {e.Message}", e); }
    }

    public static async Task WriteParquetAsync<T>(string path, IReadOnlyList<T> rows) where T : class, new()
    {
        var tmp = path + ".tmp";
        await using (var fs = File.Create(tmp))
            await ParquetSerializer.SerializeAsync(rows, fs);
        File.Move(tmp, path, overwrite: true);
    }

    public static async Task<IList<T>> ReadParquetAsync<T>(string path) where T : class, new()
    {
        await using var fs = File.OpenRead(path);
        var result = await ParquetSerializer.DeserializeAsync<T>(fs);
        return result.Data;
    }
}
