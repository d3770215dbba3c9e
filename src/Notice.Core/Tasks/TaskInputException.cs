namespace Notice.Core.Tasks;

/// <summary>
/// Bad task input: a manifest or dataset file that cannot be used. The message always names the
/// file and, where they are known, the line and the field, so a user can go straight to the fix.
/// </summary>
public sealed class TaskInputException : Exception
{
    public TaskInputException(string filePath, string problem, int? lineNumber = null, string? field = null, Exception? inner = null)
        : base(Format(filePath, problem, lineNumber, field), inner)
    {
        FilePath = filePath;
        LineNumber = lineNumber;
        Field = field;
        Problem = problem;
    }

    /// <summary>The file (or folder) at fault.</summary>
    public string FilePath { get; }

    /// <summary>1-based line number in <see cref="FilePath"/>, when the problem is on one line.</summary>
    public int? LineNumber { get; }

    /// <summary>The field or column at fault, when there is one.</summary>
    public string? Field { get; }

    /// <summary>The problem alone, without the location.</summary>
    public string Problem { get; }

    private static string Format(string filePath, string problem, int? line, string? field)
    {
        var where = line is { } l ? $"{filePath}:{l}" : filePath;
        return field is null ? $"{where}: {problem}" : $"{where}: field '{field}': {problem}";
    }
}
