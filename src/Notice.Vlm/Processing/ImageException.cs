namespace Notice.Vlm.Processing;

/// <summary>An image that cannot be used; the message starts with the file it came from.</summary>
public sealed class ImageException(string file, string problem, Exception? inner = null)
    : Exception($"{file}: {problem}", inner)
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
}
