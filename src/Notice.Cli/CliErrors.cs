using System.CommandLine;

namespace Notice.Cli;

/// <summary>Runs the command line; bad input ends in one clear line on stderr and exit code 2,
/// never a stack trace.</summary>
public static class CliErrors
{
    public static async Task<int> InvokeAsync(RootCommand root, string[] args)
    {
        try
        {
            // The default handler would print a stack trace: bad input gets one line instead.
            return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (IsInputError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    public static bool IsInputError(Exception e) => Notice.Core.InputErrors.IsInputError(e);
}
