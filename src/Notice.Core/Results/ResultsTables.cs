using System.Globalization;
using CsvHelper;
using CsvHelper.Configuration;
using Notice.Core.Patching;
using Parquet;
using Parquet.Schema;
using Parquet.Serialization;

namespace Notice.Core.Results;

/// <summary>
/// CSV and Parquet files of results rows. CSV columns are snake_case (design.md §6); the same
/// names are used in Parquet. Tables and figures are derived from these files only. The results
/// table's metric columns come from <see cref="Metrics.All"/>. A field a spreadsheet would take for
/// a formula (=, +, -, @ first) is escaped.
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
            foreach (var m in MemberMaps)
            {
                m.Name(SnakeCase(m.Data.Member!.Name));
                if (m.Data.Type == typeof(string)) m.TypeConverter<SafeTextConverter>();
            }
        }
    }

    /// <summary>Text cells a spreadsheet would run as a formula get a leading apostrophe (OWASP's
    /// advice), removed again when Notice reads the table back.</summary>
    private sealed class SafeTextConverter : CsvHelper.TypeConversion.StringConverter
    {
        public override string? ConvertToString(object? value, IWriterRow row, MemberMapData memberMapData) => Escape((string?)value ?? "");
        public override object? ConvertFromString(string? text, IReaderRow row, MemberMapData memberMapData) => Unescape(text ?? "");
    }

    private static bool IsFormulaStart(char c) => c is '=' or '+' or '-' or '@' or '\t' or '\r';

    public static string Escape(string text) => text.Length > 0 && IsFormulaStart(text[0]) ? "'" + text : text;

    public static string Unescape(string text) => text.Length > 1 && text[0] == '\'' && IsFormulaStart(text[1]) ? text[1..] : text;

    public static string SnakeCase(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    private static IReadOnlyList<string> ResultColumns => [.. ResultRow.IdentityColumns, .. Metrics.All.Select(m => m.Name)];

    /// <summary>Appends rows (writing the header when the file is new) and flushes them to disk.</summary>
    public static void Append<T>(string path, IEnumerable<T> rows)
    {
        bool exists = File.Exists(path) && new FileInfo(path).Length > 0;
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        using var writer = new StreamWriter(stream);
        using var csv = new CsvWriter(writer, Config);
        if (typeof(T) == typeof(ResultRow))
        {
            if (!exists) WriteFields(csv, ResultColumns);
            foreach (var row in rows) WriteFields(csv, Fields((ResultRow)(object)row!));
        }
        else
        {
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
        try
        {
            if (typeof(T) == typeof(ResultRow)) return ReadResults(csv, path).Cast<T>().ToList();
            csv.Context.RegisterClassMap<SnakeCaseMap<T>>();
            return csv.GetRecords<T>().ToList();
        }
        catch (CsvHelperException e) { throw new InvalidDataException($"{path}: unreadable results table: {e.Message}", e); }
    }

    private static void WriteFields(CsvWriter csv, IEnumerable<string> fields)
    {
        foreach (var f in fields) csv.WriteField(f);
        csv.NextRecord();
    }

    private static IEnumerable<string> Fields(ResultRow r)
    {
        var i = CultureInfo.InvariantCulture;
        return [.. new[] { r.Run, r.Model, r.Task, r.Category, r.Sample, r.Mode, r.Method, r.Site }.Select(Escape),
            r.Layer.ToString(i), r.Head.ToString(i), r.Position.ToString(i), Escape(r.Token), .. r.Values.Select(v => v.ToString(i))];
    }

    private static List<ResultRow> ReadResults(CsvReader csv, string path)
    {
        var rows = new List<ResultRow>();
        if (!csv.Read()) return rows;
        csv.ReadHeader();
        var header = csv.HeaderRecord ?? [];
        foreach (var column in ResultColumns.Where(c => c != "method"))
            if (!header.Contains(column)) throw new InvalidDataException($"{path}: the results table has no column '{column}'");
        bool hasMethod = header.Contains("method");
        var i = CultureInfo.InvariantCulture;
        while (csv.Read())
        {
            int Int(string name) => int.TryParse(csv.GetField(name), NumberStyles.Integer, i, out var v) ? v
                : throw new InvalidDataException($"{path}: row {csv.Parser.Row}: '{csv.GetField(name)}' in column {name} is not an integer");
            float Float(string name) => float.TryParse(csv.GetField(name), NumberStyles.Float, i, out var v) ? v
                : throw new InvalidDataException($"{path}: row {csv.Parser.Row}: '{csv.GetField(name)}' in column {name} is not a number");
            string Text(string name) => Unescape(csv.GetField(name) ?? "");
            rows.Add(new ResultRow
            {
                Run = Text("run"), Model = Text("model"), Task = Text("task"), Category = Text("category"),
                Sample = Text("sample"), Mode = Text("mode"), Method = hasMethod ? Text("method") : "exact",
                Site = Text("site"), Layer = Int("layer"), Head = Int("head"), Position = Int("position"), Token = Text("token"),
                Values = Metrics.All.Select(m => Float(m.Name)).ToArray(),
            });
        }
        return rows;
    }

    public static async Task WriteParquetAsync<T>(string path, IReadOnlyList<T> rows) where T : class, new()
    {
        var tmp = path + ".tmp";
        await using (var fs = File.Create(tmp))
        {
            if (rows is IReadOnlyList<ResultRow> results) await WriteResultsParquetAsync(fs, results);
            else await ParquetSerializer.SerializeAsync(rows, fs);
        }
        File.Move(tmp, path, overwrite: true);
    }

    public static async Task<IList<T>> ReadParquetAsync<T>(string path) where T : class, new()
    {
        await using var fs = File.OpenRead(path);
        if (typeof(T) == typeof(ResultRow)) return (await ReadResultsParquetAsync(fs)).Cast<T>().ToList();
        var result = await ParquetSerializer.DeserializeAsync<T>(fs);
        return result.Data;
    }

    private static readonly string[] IntColumns = ["layer", "head", "position"];

    private static ParquetSchema ResultsSchema() => new(ResultColumns.Select(c =>
        (Field)(IntColumns.Contains(c) ? new DataField<int>(c) : ResultRow.IdentityColumns.Contains(c) ? new DataField<string>(c) : new DataField<float>(c))).ToArray());

    private static async Task WriteResultsParquetAsync(Stream stream, IReadOnlyList<ResultRow> rows)
    {
        var schema = ResultsSchema();
        var fields = schema.GetDataFields();
        await using var writer = await ParquetWriter.CreateAsync(schema, stream);
        using var group = writer.CreateRowGroup();
        Func<ResultRow, string>[] strings = [r => r.Run, r => r.Model, r => r.Task, r => r.Category, r => r.Sample, r => r.Mode, r => r.Method, r => r.Site];
        for (int c = 0; c < strings.Length; c++)
            await group.WriteAsync(fields[c], rows.Select(strings[c]).ToArray());
        await group.WriteAsync<int>(fields[8], rows.Select(r => r.Layer).ToArray());
        await group.WriteAsync<int>(fields[9], rows.Select(r => r.Head).ToArray());
        await group.WriteAsync<int>(fields[10], rows.Select(r => r.Position).ToArray());
        await group.WriteAsync(fields[11], rows.Select(r => r.Token).ToArray());
        for (int m = 0; m < Metrics.All.Count; m++)
            await group.WriteAsync<float>(fields[12 + m], rows.Select(r => r.Values[m]).ToArray());
    }

    private static async Task<List<ResultRow>> ReadResultsParquetAsync(Stream stream)
    {
        await using var reader = await ParquetReader.CreateAsync(stream);
        var fields = reader.Schema.GetDataFields().ToDictionary(f => f.Name);
        var rows = new List<ResultRow>();
        for (int g = 0; g < reader.RowGroupCount; g++)
        {
            using var group = reader.OpenRowGroupReader(g);
            int n = (int)group.RowCount;
            async Task<string?[]> Strings(string c)
            {
                var a = new string?[n];
                if (fields.TryGetValue(c, out var f)) await group.ReadAsync(f, a.AsMemory());
                else Array.Fill(a, c == "method" ? "exact" : "");
                return a;
            }
            async Task<T[]> Values<T>(string c) where T : struct
            {
                var a = new T[n];
                await group.ReadAsync<T>(fields.TryGetValue(c, out var f) ? f : throw new InvalidDataException($"the results table has no column '{c}'"), a.AsMemory());
                return a;
            }
            var text = new Dictionary<string, string?[]>();
            foreach (var c in ResultRow.IdentityColumns.Where(c => !IntColumns.Contains(c))) text[c] = await Strings(c);
            var layer = await Values<int>("layer");
            var head = await Values<int>("head");
            var position = await Values<int>("position");
            var metrics = new List<float[]>();
            foreach (var m in Metrics.All) metrics.Add(await Values<float>(m.Name));
            for (int k = 0; k < n; k++)
                rows.Add(new ResultRow
                {
                    Run = text["run"][k] ?? "", Model = text["model"][k] ?? "", Task = text["task"][k] ?? "", Category = text["category"][k] ?? "",
                    Sample = text["sample"][k] ?? "", Mode = text["mode"][k] ?? "", Method = text["method"][k] ?? "exact", Site = text["site"][k] ?? "",
                    Layer = layer[k], Head = head[k], Position = position[k], Token = text["token"][k] ?? "",
                    Values = metrics.Select(v => v[k]).ToArray(),
                });
        }
        return rows;
    }
}
