namespace Notice.Core;

/// <summary>An output Notice will not replace: the file exists and Notice did not write it (or the
/// command never replaces), and --force was not given. One line, exit code 2.</summary>
public sealed class OutputExistsException(string message) : InvalidOperationException(message);

/// <summary>Outputs that must never be silently lost.</summary>
public static class OutputFiles
{
    /// <summary>Refuses, before any work is done, to overwrite any of <paramref name="paths"/> unless <paramref name="force"/>.</summary>
    public static void RefuseToOverwrite(string command, bool force, params string[] paths)
    {
        if (force) return;
        var existing = paths.Where(p => File.Exists(p) || Directory.Exists(p)).ToList();
        if (existing.Count > 0)
            throw new OutputExistsException($"{string.Join(", ", existing)} exist{(existing.Count == 1 ? "s" : "")}: {command} does not overwrite without --force");
    }
}
