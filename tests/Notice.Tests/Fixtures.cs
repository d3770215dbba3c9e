namespace Notice.Tests;

/// <summary>Where the reference fixtures are, wherever the tests run from.</summary>
public static class Fixtures
{
    /// <summary>The folder containing Notice.sln, found by walking up from the test binaries.</summary>
    public static string Root { get; } = FindRoot();

    public static string BlipTiny => Path.Combine(Root, "tests", "fixtures", "blip-tiny");

    public static string LlavaTiny => Path.Combine(Root, "tests", "fixtures", "llava-tiny");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notice.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no Notice.sln above {AppContext.BaseDirectory}");
    }
}
