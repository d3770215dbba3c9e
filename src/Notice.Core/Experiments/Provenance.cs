using System.Reflection;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Notice.Core.Experiments;

/// <summary>
/// What a results folder was computed from: model files and manifest (SHA-256), every setting,
/// and the Notice version, so any table can be traced and re-run.
/// </summary>
public static class Provenance
{
    public const string FileName = "provenance.json";

    public static string NoticeVersion =>
        typeof(Provenance).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    public static string Sha256(string path)
    {
        using var fs = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }

    /// <summary>A run id nobody else has: the name (default: the time) and a random suffix, so two runs
    /// of the same name never share keys on a shared Redis.</summary>
    public static string NewRunId(string? name = null) =>
        $"{name ?? DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture)}-{Guid.NewGuid().ToString("N")[..6]}";

    /// <summary>Everything a results folder was computed from; the same keys for local and distributed runs.</summary>
    /// <param name="pairsSha256">the manifest's hash where it was taken elsewhere (the coordinator's machine)</param>
    public static JsonObject Describe(ExperimentSpec spec, string runId, string? pairsSha256 = null)
    {
        var modelFiles = new JsonObject();
        if (Directory.Exists(spec.ModelDir))
            foreach (var f in Directory.GetFiles(spec.ModelDir).OrderBy(f => f, StringComparer.Ordinal))
                modelFiles[Path.GetFileName(f)] = Sha256(f);
        return new JsonObject
        {
            ["run"] = runId,
            ["notice_version"] = NoticeVersion,
            ["model"] = Path.GetFullPath(spec.ModelDir),
            ["model_files_sha256"] = modelFiles,
            ["pairs"] = spec.PairsPath.Length == 0 ? "" : Path.GetFullPath(spec.PairsPath),
            ["pairs_sha256"] = pairsSha256 ?? Sha256(spec.PairsPath),
            ["method"] = PatchMethods.Name(spec.Method),
            ["confirm_top"] = spec.ConfirmTop,
            ["modes"] = new JsonArray(spec.Modes.Select(m => (JsonNode)m.ToString().ToLowerInvariant()).ToArray()),
            ["sites"] = new JsonArray(spec.Sites.Select(s => (JsonNode)s.Name).ToArray()),
            ["layers"] = spec.Layers is null ? "all" : new JsonArray(spec.Layers.Select(l => (JsonNode)l).ToArray()),
            ["heads"] = spec.Heads is null ? "all" : new JsonArray(spec.Heads.Select(h => (JsonNode)h).ToArray()),
            ["positions"] = spec.Positions.ToString(),
            ["samples"] = spec.Samples is null ? "all" : spec.Samples.Value,
            ["compat"] = spec.Patching.Compat.ToString().ToLowerInvariant(),
            ["noise_multiple"] = spec.Patching.NoiseMultiple,
            ["noise_seed"] = spec.Patching.NoiseSeed,
            ["batch_size"] = spec.Patching.BatchSize,
            ["dtype"] = Notice.Vlm.VlmModel.DTypeName(spec.DType),
            ["device"] = spec.Device,
            ["machine"] = Environment.MachineName,
            ["processors"] = Environment.ProcessorCount,
            ["started_utc"] = DateTime.UtcNow.ToString("O"),
        };
    }

    /// <summary>Writes provenance, or checks that a resumed run uses the same inputs and settings.</summary>
    public static void WriteOrCheck(string outDir, JsonObject provenance)
    {
        var path = Path.Combine(outDir, FileName);
        if (File.Exists(path))
        {
            var old = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            foreach (var key in new[] { "model_files_sha256", "pairs_sha256", "method", "confirm_top", "modes", "layers", "heads", "positions", "compat", "noise_multiple", "noise_seed", "dtype" })
            {
                if (old.ContainsKey(key) && !JsonNode.DeepEquals(old[key], provenance[key]))
                    throw new InvalidOperationException($"{path}: this folder holds a run with another {key} ({old[key]?.ToJsonString()} vs {provenance[key]?.ToJsonString()}); use a new --out to start a different run");
            }
            provenance["run"] = old["run"]?.GetValue<string>();
            provenance["started_utc"] = old["started_utc"]?.GetValue<string>();
            var sites = old["sites"]!.AsArray().Select(n => n!.GetValue<string>()).Union(provenance["sites"]!.AsArray().Select(n => n!.GetValue<string>()));
            provenance["sites"] = new JsonArray(sites.Select(s => (JsonNode)s).ToArray());
        }
        File.WriteAllText(path, provenance.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
