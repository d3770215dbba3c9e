namespace Notice.Core;

/// <summary>Where the repository's built-in things are: the one search for the repository root.</summary>
public static class RepoPaths
{
    /// <summary>The repository root (the folder holding Notice.sln), searched upward from the current
    /// directory and then from the program's own folder; null outside a checkout.</summary>
    public static string? Root { get; } = FindRoot(Environment.CurrentDirectory) ?? FindRoot(AppContext.BaseDirectory);

    /// <summary>The built-in model, models/shapes-blip (its path relative to the current directory outside a checkout).</summary>
    public static string BuiltInModel => Path.Combine(Root ?? "", "models", "shapes-blip");

    /// <summary>Where runs go by default: runs/ under the repository (or the current directory).</summary>
    public static string RunsFolder => Path.Combine(Root ?? Environment.CurrentDirectory, "runs");

    public static string? FindRoot(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notice.sln"))) return dir.FullName;
        return null;
    }
}
