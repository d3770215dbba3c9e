namespace Notice.Tests;

public static class Fixtures
{
    public static string Root { get; } = FindRoot();

    public static string BlipTiny => Path.Combine(Root, "tests", "fixtures", "blip-tiny");

    public static string LlavaTiny => Path.Combine(Root, "tests", "fixtures", "llava-tiny");

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Notice.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("Notice.sln not found above " + AppContext.BaseDirectory);
    }
}
