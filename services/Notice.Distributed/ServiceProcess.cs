using System.Diagnostics;
using System.Text;

namespace Notice.Distributed;

/// <summary>A Notice service (coordinator, worker, aggregator) as a real process, from the solution's build output.</summary>
public sealed class ServiceProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    public string Output { get { lock (_output) return _output.ToString(); } }
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;
    public int Id => _process.Id;

    /// <summary>The service's built program under <paramref name="repoRoot"/>, in the same configuration
    /// (Debug or Release) as the calling program.</summary>
    public static string ProgramPath(string repoRoot, string service)
    {
        var configuration = AppContext.BaseDirectory.Contains("/Release/") ? "Release" : "Debug";
        var dll = Path.Combine(repoRoot, "services", service, "bin", configuration, "net10.0", service + ".dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dll}: build the solution first (dotnet build Notice.sln -c {configuration})");
        return dll;
    }

    public ServiceProcess(string dll, IReadOnlyDictionary<string, string> environment, IEnumerable<string>? args = null)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        foreach (var a in args ?? []) psi.ArgumentList.Add(a);
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        psi.Environment["DOTNET_ENVIRONMENT"] = "Development";
        _process = Process.Start(psi) ?? throw new InvalidOperationException($"{dll} did not start");
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public void Kill() { if (!_process.HasExited) _process.Kill(entireProcessTree: true); _process.WaitForExit(10_000); }

    public Task WaitForExitAsync(TimeSpan timeout) => _process.WaitForExitAsync(new CancellationTokenSource(timeout).Token);

    public void Dispose()
    {
        try { Kill(); } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
