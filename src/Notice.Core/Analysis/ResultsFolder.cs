using System.Text.Json.Nodes;
using Notice.Core.Experiments;
using Notice.Core.Results;

namespace Notice.Core.Analysis;

/// <summary>
/// Everything analysis reads: the files of one results folder (design.md §6). Tables and figures
/// are derived from these alone, so any run can be re-analysed later, on another machine.
/// </summary>
public sealed class ResultsFolder
{
    public required string Directory { get; init; }
    public required IReadOnlyList<ResultRow> Results { get; init; }
    public required IReadOnlyList<BaselineRow> Baselines { get; init; }
    public required IReadOnlyList<FailureRow> Failures { get; init; }

    /// <summary>provenance.json, or null when the folder has none.</summary>
    public JsonObject? Provenance { get; init; }

    /// <summary>
    /// Reads results.csv, or results.parquet where there is no CSV. The CSV comes first because a
    /// run appends to it as groups finish, so it is complete even for an interrupted run, while
    /// the Parquet copy is written only when a run completes.
    /// </summary>
    public static async Task<ResultsFolder> LoadAsync(string dir)
    {
        if (!System.IO.Directory.Exists(dir)) throw new DirectoryNotFoundException($"results folder not found: {dir}");
        var csv = Path.Combine(dir, ResultsTables.ResultsCsv);
        var parquet = Path.Combine(dir, ResultsTables.ResultsParquet);
        IReadOnlyList<ResultRow> results;
        if (File.Exists(csv)) results = ResultsTables.Read<ResultRow>(csv);
        else if (File.Exists(parquet)) results = (await ResultsTables.ReadParquetAsync<ResultRow>(parquet)).ToList();
        else throw new FileNotFoundException($"{dir} holds neither {ResultsTables.ResultsCsv} nor {ResultsTables.ResultsParquet}");

        var provenancePath = Path.Combine(dir, Experiments.Provenance.FileName);
        JsonObject? provenance = null;
        if (File.Exists(provenancePath))
        {
            try { provenance = JsonNode.Parse(await File.ReadAllTextAsync(provenancePath))?.AsObject(); }
            catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{provenancePath}: not valid JSON: {e.Message}", e); }
        }
        return new ResultsFolder
        {
            Directory = Path.GetFullPath(dir),
            Results = results,
            Baselines = ResultsTables.Read<BaselineRow>(Path.Combine(dir, ResultsTables.BaselinesCsv)),
            Failures = ResultsTables.Read<FailureRow>(Path.Combine(dir, ResultsTables.FailuresCsv)),
            Provenance = provenance,
        };
    }
}
