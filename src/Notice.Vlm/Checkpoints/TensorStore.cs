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
            if (File.Exists(single))
            {
                var f = SafeTensorsFile.Open(single);
                store._files.Add(f);
                foreach (var name in f.Entries.Keys) store._fileOf[name] = f;
            }
            else if (File.Exists(index))
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

    private void OpenSharded(string index)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new CheckpointException(index, "has no 'weight_map' object");
            weightMap = wm.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);
        }
        catch (JsonException e) { throw new CheckpointException(index, $"invalid JSON: {e.Message}"); }
        var opened = new Dictionary<string, SafeTensorsFile>();
        foreach (var (name, shard) in weightMap)
        {
            if (!opened.TryGetValue(shard, out var f))
            {
                var shardPath = Path.Combine(Folder, shard);
                if (!File.Exists(shardPath))
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
