using System.Text.Json;
using static TorchSharp.torch;

namespace Notice.Vlm.Checkpoints;

/// <summary>
/// The weights of a Hugging Face checkpoint folder: model.safetensors, or the shards named by
/// model.safetensors.index.json. Tensors are read lazily by name.
/// </summary>
public sealed class TensorStore : IDisposable
{
    private readonly Dictionary<string, SafeTensorsFile> _fileOf = new(StringComparer.Ordinal);
    private readonly List<SafeTensorsFile> _files = new();

    public string Folder { get; }
    public IEnumerable<string> Names => _fileOf.Keys;

    private TensorStore(string folder) { Folder = folder; }

    public static TensorStore Open(string folder)
    {
        var store = new TensorStore(folder);
        try
        {
            var single = Path.Combine(folder, "model.safetensors");
            var index = Path.Combine(folder, "model.safetensors.index.json");
            if (InputFiles.Stat(single).Kind != InputFileKind.Missing)
            {
                var f = SafeTensorsFile.Open(single);
                store._files.Add(f);
                foreach (var name in f.Entries.Keys) store._fileOf[name] = f;
            }
            else if (InputFiles.Stat(index).Kind != InputFileKind.Missing)
            {
                store.OpenSharded(index);
            }
            else
            {
                throw new CheckpointException(single, "file not found (and no model.safetensors.index.json beside it)");
            }
        }
        catch
        {
            store.Dispose();
            throw;
        }
        return store;
    }

    /// <summary>The largest model.safetensors.index.json accepted: 64 MiB (a 400B-parameter model's is under 1 MiB).</summary>
    public const long MaxIndexBytes = 64L << 20;

    private void OpenSharded(string index)
    {
        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            var bytes = InputFiles.ReadAllBytes(index, MaxIndexBytes, problem => new CheckpointException(index, problem));
            using var doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new CheckpointException(index, "has no 'weight_map' object");
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointException(index, $"weight_map entry '{p.Name}' must be a shard file name (a string), found {p.Value.ValueKind}");
                weightMap[p.Name] = p.Value.GetString()!;
            }
        }
        catch (JsonException e) { throw new CheckpointException(index, $"invalid JSON: {e.Message.ReplaceLineEndings(" ")}"); }
        var opened = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        foreach (var (name, shard) in weightMap)
        {
            if (!opened.TryGetValue(shard, out var f))
            {
                var shardPath = ShardPath(index, name, shard);
                if (InputFiles.Stat(shardPath).Kind == InputFileKind.Missing)
                    throw new CheckpointException(index, $"weight_map names shard '{shard}' (for '{name}'), which does not exist");
                f = SafeTensorsFile.Open(shardPath);
                opened[shard] = f;
                _files.Add(f);
            }
            if (!f.Contains(name))
                throw new CheckpointException(f.Path, $"index {Path.GetFileName(index)} says it holds '{name}', but it does not");
            _fileOf[name] = f;
        }
    }

    /// <summary>
    /// The path of a shard the index names, which must stay inside the model folder: a relative path
    /// without ".." segments, not absolute, not empty. (The shard itself may be a link that leads
    /// elsewhere, as a Hugging Face cache's snapshot files lead into its blobs folder: the folder's
    /// owner made that link, while the index is only data.)
    /// </summary>
    private string ShardPath(string index, string tensor, string shard)
    {
        string? problem = null;
        if (shard.Length == 0 || shard.Trim().Length == 0) problem = "is empty";
        else if (shard.Contains('\0')) problem = "contains a NUL character";
        else if (Path.IsPathRooted(shard) || shard.StartsWith('/') || shard.StartsWith('\\') || (shard.Length >= 2 && shard[1] == ':'))
            problem = "is an absolute path; shards must be inside the model folder";
        else if (shard.Split('/', '\\').Any(part => part == ".."))
            problem = "leads out of the model folder (\"..\"); shards must be inside it";
        if (problem is null)
        {
            var root = Path.GetFullPath(Folder);
            var full = Path.GetFullPath(Path.Combine(root, shard));
            if (!full.StartsWith(Path.TrimEndingDirectorySeparator(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                problem = "is not inside the model folder";
            else return full;
        }
        throw new CheckpointException(index, $"weight_map names shard '{shard}' (for '{tensor}'), which {problem}");
    }

    public bool Contains(string name) => _fileOf.ContainsKey(name);
    public SafeTensorEntry Entry(string name) => _fileOf[name].Entries[name];

    public Tensor Read(string name, ScalarType? dtype = null)
    {
        if (!_fileOf.TryGetValue(name, out var f)) throw new CheckpointException(Folder, $"no tensor named '{name}'");
        return f.Read(name, dtype);
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
