namespace Notice.Tests;

public static class Fixtures
{
    public static string Root { get; } = Notice.Core.RepoPaths.FindRoot(AppContext.BaseDirectory)
        ?? throw new DirectoryNotFoundException("Notice.sln not found above " + AppContext.BaseDirectory);

    public static string BlipTiny => Path.Combine(Root, "tests", "fixtures", "blip-tiny");

    public static string LlavaTiny => Path.Combine(Root, "tests", "fixtures", "llava-tiny");
}
