using System.Runtime.InteropServices;
using Notice.Vlm.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Checkpoints;

/// <summary>One dimension a config implies for a stored tensor: its size and the config field it
/// comes from ("" for a size fixed by the architecture).</summary>
public readonly record struct ImpliedDim(long Size, string Field);

/// <summary>A stored tensor whose shape follows from config.json's size fields.</summary>
public sealed record ShapeProbe(string Tensor, params ImpliedDim[] Dims);

/// <summary>A stack of <paramref name="Layers"/> layers whose last one must be stored
/// (<paramref name="TensorOfLayer"/> names a tensor of layer i).</summary>
public sealed record LayerProbe(string Field, int Layers, Func<int, string> TensorOfLayer);

/// <summary>
/// Checks config.json against the checkpoint BEFORE the model is built: every size field the
/// architecture turns into a parameter shape (widths, vocabulary, positions, patch grid, layer counts)
/// is compared with the shapes in the safetensors header(s), so a config that disagrees with its
/// weights (hidden_size 32768 beside a 64-wide checkpoint, 512 layers beside 3) is refused with the
/// field's name instead of allocating a model from it. Once they agree the model is about as large as
/// its checkpoint; <see cref="CheckMemory"/> refuses one larger than the machine, and
/// <see cref="Allocate{T}"/> turns any allocation failure that remains into the same one-line error.
/// </summary>
public static class ConfigShapeCheck
{
    public static void Verify(TensorStore store, string configFile, IEnumerable<ShapeProbe> probes, IEnumerable<LayerProbe> layers)
    {
        foreach (var layer in layers)
        {
            if (layer.Layers <= 0) continue;
            var last = layer.TensorOfLayer(layer.Layers - 1);
            if (store.Contains(last)) continue;
            int stored = 0;
            while (stored < layer.Layers && store.Contains(layer.TensorOfLayer(stored))) stored++;
            throw new ConfigException(configFile, layer.Field,
                $"is {layer.Layers}, but the weights in {store.Folder} hold {stored} such layers (no tensor '{last}')");
        }
        foreach (var probe in probes)
        {
            if (!store.Contains(probe.Tensor))
                throw new CheckpointException(store.Folder, $"weights do not match the model described by config.json: missing (1): {probe.Tensor}");
            var entry = store.Entry(probe.Tensor);
            var implied = probe.Dims.Select(d => d.Size).ToArray();
            if (entry.Shape.SequenceEqual(implied)) continue;
            // Name the field behind the first dimension that differs (or the first field, if the rank differs).
            string field = entry.Shape.Length == implied.Length
                ? probe.Dims.Where((d, i) => entry.Shape[i] != d.Size).Select(d => d.Field).FirstOrDefault(f => f.Length > 0) ?? ""
                : probe.Dims.Select(d => d.Field).FirstOrDefault(f => f.Length > 0) ?? "";
            var problem = $"does not match the weights: tensor '{probe.Tensor}' in {entry.File} is {SafeTensorsFile.Fmt(entry.Shape)}, but config.json implies {SafeTensorsFile.Fmt(implied)}";
            if (field.Length == 0) throw new CheckpointException(entry.File, $"tensor '{probe.Tensor}' is {SafeTensorsFile.Fmt(entry.Shape)}, but the model described by {configFile} needs {SafeTensorsFile.Fmt(implied)}");
            throw new ConfigException(configFile, field, problem);
        }
    }

    /// <summary>Bytes the checkpoint's tensors take once converted to <paramref name="dtype"/>.</summary>
    public static long ModelBytes(TensorStore store, ScalarType dtype)
    {
        int size = SafeTensorsFile.DTypeSize(SafeTensorsFile.ToDType(dtype));
        long total = 0;
        foreach (var name in store.Names)
        {
            var e = store.Entry(name);
            long elements = (e.End - e.Begin) / SafeTensorsFile.DTypeSize(e.DType);
            try { total = checked(total + elements * size); }
            catch (OverflowException) { return long.MaxValue; }
        }
        return total;
    }

    /// <summary>
    /// Refuses, before anything is allocated, a model (built on the CPU in <paramref name="dtype"/>) that
    /// needs more memory than the machine (or its container) has. The model's size is the checkpoint's,
    /// which <see cref="Verify"/> has matched with config.json.
    /// </summary>
    public static void CheckMemory(TensorStore store, string configFile, string field, ScalarType dtype, Device? device)
    {
        if (device is not null && device.type != DeviceType.CPU) return;
        long need = ModelBytes(store, dtype);
        long have = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (have > 0 && need > have)
            throw new ConfigException(configFile, field,
                $"describes a model of {InputFiles.Bytes(need)} in {dtype} (the size of the weights in {store.Folder}), more than this machine's {InputFiles.Bytes(have)} of memory");
    }

    /// <summary>
    /// Runs <paramref name="build"/> (building a model, moving it to a device), turning a failed
    /// allocation (OutOfMemoryException, or libtorch's "can't allocate memory" / "CUDA out of memory")
    /// into a one-line error naming config.json and <paramref name="field"/>.
    /// </summary>
    public static T Allocate<T>(string configFile, string field, Func<T> build)
    {
        try
        {
            return build();
        }
        catch (Exception e) when (IsAllocationFailure(e))
        {
            throw new ConfigException(configFile, field, $"the model it describes could not be allocated: {FirstLine(e.Message)}");
        }
    }

    public static bool IsAllocationFailure(Exception e) => e is OutOfMemoryException
        || (e is ExternalException && (e.Message.Contains("alloc", StringComparison.OrdinalIgnoreCase)
                                       || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)));

    private static string FirstLine(string s)
    {
        var line = s.Split('\n', 2)[0].Trim();
        return line.Length <= 200 ? line : line[..197] + "...";
    }
}
