using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Notice.Vlm.Checkpoints;

/// <summary>
/// Copies a checkpoint's tensors into a module's parameters and buffers, by name, strictly: every
/// expected tensor must be present with the expected shape, and nothing unexpected may be left
/// over. Tensors are converted to each parameter's dtype one at a time.
/// </summary>
public static class WeightLoader
{
    /// <param name="expected">name -> the parameter or buffer to fill</param>
    /// <param name="optional">names that may be absent (e.g. tied weights)</param>
    /// <param name="ignored">checkpoint names that are known and deliberately unused</param>
    public static void Load(TensorStore store, IReadOnlyDictionary<string, Tensor> expected,
        ISet<string>? optional = null, Func<string, bool>? ignored = null)
    {
        var missing = new List<string>();
        var misShaped = new List<string>();
        foreach (var (name, target) in expected)
        {
            if (!store.Contains(name))
            {
                if (optional is null || !optional.Contains(name)) missing.Add(name);
                continue;
            }
            var entry = store.Entry(name);
            if (!entry.Shape.SequenceEqual(target.shape))
            {
                misShaped.Add($"{name}: checkpoint {SafeTensorsFile.Fmt(entry.Shape)}, model {SafeTensorsFile.Fmt(target.shape)}");
            }
        }
        var unexpected = store.Names.Where(n => !expected.ContainsKey(n) && !(ignored?.Invoke(n) ?? false)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        if (missing.Count + misShaped.Count + unexpected.Count > 0)
        {
            var sb = new StringBuilder("weights do not match the model described by config.json:");
            Append(sb, "missing", missing);
            Append(sb, "mis-shaped", misShaped);
            Append(sb, "unexpected", unexpected);
            throw new CheckpointException(store.Folder, sb.ToString().TrimEnd(';'));
        }
        using var _ = torch.no_grad();
        foreach (var (name, target) in expected)
        {
            if (!store.Contains(name)) continue;
            using var src = store.Read(name, target.dtype);
            target.copy_(src);
        }
    }

    private static void Append(StringBuilder sb, string what, List<string> names)
    {
        if (names.Count == 0) return;
        // One line, so a command line reports it as one error line.
        sb.Append($" {what} ({names.Count}): ");
        sb.Append(string.Join(", ", names.Take(20)));
        if (names.Count > 20) sb.Append($", ... ({names.Count - 20} more)");
        sb.Append(';');
    }
}
