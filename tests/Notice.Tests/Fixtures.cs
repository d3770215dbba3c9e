namespace Notice.Tests;

/// <summary>
/// Paths of the reference fixtures. The repository root is found by walking up from the test
/// binaries to the folder that holds Notice.sln, so tests run from any working directory.
/// </summary>
public static class Fixtures
{
    public static string Root = FindRoot();
    public static string BlipTiny = Path.Combine(Root, "tests", "fixtures", "blip-tiny");
    public static string LlavaTiny = Path.Combine(Root, "tests", "fixtures", "llava-tiny");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notice.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Notice.sln in {AppContext.BaseDirectory} or any folder above it");
    }
}
