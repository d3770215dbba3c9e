using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorEntry(string Name, string DType, long[] Shape, long Begin, long End, string File)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A safetensors file: an 8-byte little-endian header length, a JSON header naming every tensor's
/// dtype, shape and byte range, then the raw little-endian data. Tensors are read one at a time
/// through a memory map, so loading never holds a second copy of the whole file.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly long _dataStart;
    private readonly long _fileLength;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsFile(string path, MemoryMappedFile map, long dataStart, long fileLength,
        Dictionary<string, SafeTensorEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path; _map = map; _dataStart = dataStart; _fileLength = fileLength;
        Entries = entries; Metadata = metadata;
    }

    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException(path, "file not found");
        long length = new FileInfo(path).Length;
        if (length < 8) throw new CheckpointException(path, $"truncated: {length} bytes, too short for a safetensors header");
        ulong headerLength;
        byte[] header;
        using (var fs = File.OpenRead(path))
        {
            Span<byte> lenBytes = stackalloc byte[8];
            fs.ReadExactly(lenBytes);
            headerLength = BitConverter.ToUInt64(lenBytes);
            if (headerLength == 0 || headerLength > (ulong)(length - 8) || headerLength > 100_000_000)
                throw new CheckpointException(path, $"not a safetensors file or truncated: header length {headerLength} with file length {length}");
            header = new byte[headerLength];
            fs.ReadExactly(header);
        }
        var entries = new Dictionary<string, SafeTensorEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>();
        long dataStart = 8 + (long)headerLength;
        long dataLength = length - dataStart;
        try
        {
            using var doc = JsonDocument.Parse(header);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    foreach (var m in prop.Value.EnumerateObject()) metadata[m.Name] = m.Value.ToString();
                    continue;
                }
                var dtype = prop.Value.GetProperty("dtype").GetString()!;
                var shape = prop.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var offs = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var entry = new SafeTensorEntry(prop.Name, dtype, shape, offs[0], offs[1], path);
                long expected = entry.ElementCount * DTypeSize(dtype, path, prop.Name);
                if (offs[1] - offs[0] != expected)
                    throw new CheckpointException(path, $"tensor '{prop.Name}' has {offs[1] - offs[0]} bytes but {dtype}{Fmt(shape)} needs {expected}");
                if (offs[1] > dataLength)
                    throw new CheckpointException(path, $"truncated: tensor '{prop.Name}' ends at byte {offs[1]} of the data section, which has only {dataLength} bytes");
                entries[prop.Name] = entry;
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new CheckpointException(path, $"unreadable safetensors header: {e.Message}");
        }
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        return new SafeTensorsFile(path, map, dataStart, length, entries, metadata);
    }

    internal static string Fmt(long[] shape) => "[" + string.Join(", ", shape) + "]";

    public static int DTypeSize(string dtype, string file = "", string name = "") => dtype switch
    {
        "F64" or "I64" => 8,
        "F32" or "I32" => 4,
        "F16" or "BF16" or "I16" => 2,
        "U8" or "I8" or "BOOL" => 1,
        _ => throw new CheckpointException(file, $"tensor '{name}' has unsupported dtype {dtype}"),
    };

    public static ScalarType ToScalarType(string dtype) => dtype switch
    {
        "F64" => ScalarType.Float64,
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte,
        "BOOL" => ScalarType.Bool,
        _ => throw new NotSupportedException(dtype),
    };

    public static string ToDType(ScalarType t) => t switch
    {
        ScalarType.Float64 => "F64",
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new NotSupportedException(t.ToString()),
    };

    public bool Contains(string name) => Entries.ContainsKey(name);

    /// <summary>Reads one tensor (CPU, its stored dtype unless <paramref name="dtype"/> is given).</summary>
    public Tensor Read(string name, ScalarType? dtype = null)
    {
        if (!Entries.TryGetValue(name, out var e)) throw new CheckpointException(Path, $"no tensor named '{name}'");
        var stored = ToScalarType(e.DType);
        var t = torch.empty(e.Shape, stored);
        long n = e.End - e.Begin;
        if (n > 0)
        {
            using var view = _map.CreateViewStream(_dataStart + e.Begin, n, MemoryMappedFileAccess.Read);
            var dst = t.bytes;
            // The span over the tensor's storage is filled straight from the mapped file.
            int read = 0;
            while (read < dst.Length)
            {
                int r = view.Read(dst[read..]);
                if (r == 0) throw new CheckpointException(Path, $"truncated while reading '{name}'");
                read += r;
            }
        }
        if (dtype is { } want && want != stored)
        {
            var converted = t.to_type(want);
            t.Dispose();
            return converted;
        }
        return t;
    }

    public void Dispose() => _map.Dispose();

    /// <summary>Writes tensors (CPU, contiguous copies are made as needed) in safetensors layout.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        long offset = 0;
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        foreach (var (name, t) in list)
        {
            long bytes = t.numel() * t.ElementSize;
            header[name] = new Dictionary<string, object>
            {
                ["dtype"] = ToDType(t.dtype),
                ["shape"] = t.shape,
                ["data_offsets"] = new[] { offset, offset + bytes },
            };
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        int pad = (8 - json.Length % 8) % 8; // keep the data section 8-byte aligned, as the reference writer does
        var headerBytes = new byte[json.Length + pad];
        json.CopyTo(headerBytes, 0);
        for (int i = json.Length; i < headerBytes.Length; i++) headerBytes[i] = (byte)' ';
        var tmp = path + ".tmp";
        using (var fs = File.Create(tmp))
        {
            fs.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
            fs.Write(headerBytes);
            foreach (var (_, t) in list)
            {
                using var c = t.detach().cpu().contiguous();
                fs.Write(c.bytes);
            }
        }
        File.Move(tmp, path, overwrite: true);
    }
}

/// <summary>A checkpoint file that cannot be used; the message names the file and what is wrong.</summary>
public sealed class CheckpointException(string file, string problem) : Exception($"{file}: {problem}")
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
}
