namespace Notice.Cli;

/// <summary>Built-in defaults: paths are found relative to the repository the command runs from.</summary>
public static class Defaults
{
    /// <summary>The repository root (the folder holding Notice.sln), searched upward from the current
    /// directory and then from the program's own folder.</summary>
    public static string? RepoRoot { get; } = FindRoot(Environment.CurrentDirectory) ?? FindRoot(AppContext.BaseDirectory);

    /// <summary>The built-in model: models/shapes-blip once trained, else the BLIP fixture checkpoint.</summary>
    public static string Model
    {
        get
        {
            if (RepoRoot is null) return "models/shapes-blip";
            var shapes = Path.Combine(RepoRoot, "models", "shapes-blip");
            return Directory.Exists(shapes) ? shapes : Path.Combine(RepoRoot, "tests", "fixtures", "blip-tiny");
        }
    }

    private static string? FindRoot(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notice.sln"))) return dir.FullName;
        return null;
    }
}
