using SkiaSharp;

namespace Notice.Core.Tasks;

/// <summary>Image files of the datasets: which names count as images and whether one can be decoded.</summary>
public static class ImageFiles
{
    /// <summary>Extensions read as images (lower case, with the dot).</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"];

    public static bool HasImageExtension(string path) =>
        Extensions.Contains(Path.GetExtension(path).ToLowerInvariant());

    /// <summary>
    /// True when the file exists and its header decodes as an image of a known format. Only the header
    /// is read, so checking every image of a large dataset stays cheap.
    /// </summary>
    public static bool IsReadable(string path)
    {
        try
        {
            using var codec = SKCodec.Create(path);
            return codec is not null && codec.Info.Width > 0 && codec.Info.Height > 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Image files directly in <paramref name="folder"/>, in ordinal name order (so output is the same on every file system).</summary>
    public static List<string> List(string folder) =>
        [.. Directory.EnumerateFiles(folder).Where(HasImageExtension).Order(StringComparer.Ordinal)];
}
