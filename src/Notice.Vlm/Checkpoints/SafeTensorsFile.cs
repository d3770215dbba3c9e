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

    /// <summary>The largest header accepted, as the reference (Rust) reader: 100 MB.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>
    /// Opens and checks a safetensors file as the reference (Rust) reader does: the header is a JSON
    /// object of at most 100 MB that fits in the file; every tensor has a known dtype, a shape of
    /// non-negative integers and exactly two non-negative integer data_offsets [begin, end]; its byte
    /// length is the shape's element count times the dtype's size; and the tensors, sorted by offset,
    /// are contiguous and cover the data section exactly (no gaps, no overlaps, nothing after them).
    /// Links are followed (a Hugging Face cache's snapshot files link into its blobs folder).
    /// </summary>
    public static SafeTensorsFile Open(string path)
    {
        long length = InputFiles.RegularFileLength(path, long.MaxValue, problem => new CheckpointException(path, problem));
        if (length < 8) throw new CheckpointException(path, $"truncated: {length} bytes, too short for a safetensors header");
        ulong headerLength;
        byte[] header;
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
            length = fs.Length;   // of the file actually opened
            if (length < 8) throw new CheckpointException(path, $"truncated: {length} bytes, too short for a safetensors header");
            Span<byte> lenBytes = stackalloc byte[8];
            fs.ReadExactly(lenBytes);
            headerLength = BitConverter.ToUInt64(lenBytes);
            if (headerLength == 0 || headerLength > (ulong)MaxHeaderBytes || headerLength > (ulong)(length - 8))
                throw new CheckpointException(path, $"not a safetensors file or truncated: header length {headerLength} with file length {length} (the header must fit in the file and be at most {MaxHeaderBytes} bytes)");
            header = new byte[headerLength];
            fs.ReadExactly(header);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, $"cannot read the file: {e.Message}");
        }
        long dataStart = 8 + (long)headerLength;
        long dataLength = length - dataStart;
        var (entries, metadata) = ParseHeader(path, header, dataLength);
        MemoryMappedFile map;
        try
        {
            // An empty data section cannot be mapped; nothing is ever read from it then.
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new CheckpointException(path, $"cannot map the file: {e.Message}");
        }
        return new SafeTensorsFile(path, map, dataStart, length, entries, metadata);
    }

    private static (Dictionary<string, SafeTensorEntry>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        var entries = new Dictionary<string, SafeTensorEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>();
        if (header[0] != (byte)'{')
            throw new CheckpointException(path, "not a safetensors file: the header does not start with '{'");
        try
        {
            using var doc = JsonDocument.Parse(header);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointException(path, "not a safetensors file: the header is not a JSON object");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new CheckpointException(path, "header field '__metadata__' must be an object of strings");
                    foreach (var m in prop.Value.EnumerateObject()) metadata[m.Name] = m.Value.ToString();
                    continue;
                }
                if (entries.ContainsKey(prop.Name))
                    throw new CheckpointException(path, $"tensor '{prop.Name}' appears twice in the header");
                entries[prop.Name] = ParseEntry(path, prop.Name, prop.Value);
            }
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new CheckpointException(path, $"unreadable safetensors header: {OneLine(e.Message)}");
        }

        // Sorted by offset, the tensors must tile the data section: each starts where the last ended.
        long end = 0;
        string? previous = null;
        foreach (var e in entries.Values.OrderBy(e => e.Begin).ThenBy(e => e.End).ThenBy(e => e.Name, StringComparer.Ordinal))
        {
            if (e.End > dataLength)
                throw new CheckpointException(path, $"truncated: tensor '{e.Name}' ends at byte {e.End} of the data section, which has only {dataLength} bytes");
            if (e.Begin != end)
                throw new CheckpointException(path, previous is null
                    ? $"tensor '{e.Name}' starts at byte {e.Begin} of the data section, but the first tensor must start at 0 (tensors must be contiguous)"
                    : e.Begin < end
                        ? $"tensor '{e.Name}' (data_offsets [{e.Begin}, {e.End}]) overlaps tensor '{previous}', which ends at byte {end}"
                        : $"gap of {e.Begin - end} bytes between tensor '{previous}' (ends at byte {end}) and tensor '{e.Name}' (starts at byte {e.Begin}); tensors must be contiguous");
            end = e.End;
            previous = e.Name;
        }
        if (end != dataLength)
            throw new CheckpointException(path, $"the tensors cover {end} bytes of the data section, but it has {dataLength} bytes: {dataLength - end} bytes after the last tensor belong to none");
        return (entries, metadata);
    }

    private static SafeTensorEntry ParseEntry(string path, string name, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new CheckpointException(path, $"tensor '{name}': expected an object with dtype, shape and data_offsets, found {Short(value)}");
        if (!value.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new CheckpointException(path, $"tensor '{name}': 'dtype' must be a string such as \"F32\"");
        var dtype = dt.GetString()!;
        int elementSize = DTypeSize(dtype, path, name);
        if (!value.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new CheckpointException(path, $"tensor '{name}': 'shape' must be an array of non-negative integers");
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var n) || n < 0)
                throw new CheckpointException(path, $"tensor '{name}': 'shape' must be an array of non-negative integers, found {Short(sh)}");
            shape[i++] = n;
        }
        if (!value.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new CheckpointException(path, $"tensor '{name}': 'data_offsets' must be exactly two non-negative integers [begin, end], found {(off.ValueKind == JsonValueKind.Undefined ? "none" : Short(off))}");
        var offs = new long[2];
        i = 0;
        foreach (var d in off.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var n) || n < 0)
                throw new CheckpointException(path, $"tensor '{name}': 'data_offsets' must be exactly two non-negative integers [begin, end] that fit in 64 bits, found {Short(off)}");
            offs[i++] = n;
        }
        if (offs[1] < offs[0])
            throw new CheckpointException(path, $"tensor '{name}': data_offsets [{offs[0]}, {offs[1]}] end before they begin");
        long expected;
        try
        {
            expected = elementSize;
            foreach (var n in shape) expected = checked(expected * n);
        }
        catch (OverflowException)
        {
            throw new CheckpointException(path, $"tensor '{name}': {dtype}{Fmt(shape)} has more bytes than fit in 64 bits");
        }
        if (offs[1] - offs[0] != expected)
            throw new CheckpointException(path, $"tensor '{name}' has {offs[1] - offs[0]} bytes but {dtype}{Fmt(shape)} needs {expected}");
        return new SafeTensorEntry(name, dtype, shape, offs[0], offs[1], path);
    }

    private static string Short(JsonElement e)
    {
        var text = e.GetRawText();
        return OneLine(text.Length <= 60 ? text : text[..57] + "...");
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");

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
        Tensor t;
        try { t = torch.empty(e.Shape, stored); }
        catch (Exception x) when (ConfigShapeCheck.IsAllocationFailure(x))
        {
            throw new CheckpointException(Path, $"tensor '{name}' ({e.DType}{Fmt(e.Shape)}, {InputFiles.Bytes(e.End - e.Begin)}) could not be allocated: {x.Message.Split('\n', 2)[0].Trim()}");
        }
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
