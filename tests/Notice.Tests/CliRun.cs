using System.CommandLine;
using Notice.Cli;

namespace Notice.Tests;

/// <summary>Runs a `notice` command in this process as the CLI runs it (<see cref="CliErrors"/>: bad
/// input is one error line and exit code 2), with standard output and error captured. Tests that
/// use it belong to <see cref="ConsoleCollection"/>, since the console is the process's.</summary>
internal static class CliRun
{
    public static async Task<(int Code, string Out, string Err)> RunAsync(Command command, params string[] args)
    {
        TextWriter previousOut = Console.Out, previousErr = Console.Error;
        StringWriter output = new(), error = new();
        Console.SetOut(output);
        Console.SetError(error);
        try { return (await CliErrors.InvokeAsync(new RootCommand { command }, args), output.ToString(), error.ToString()); }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousErr);
        }
    }
}
