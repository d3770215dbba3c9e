using Notice.Distributed;
using Notice.Vlm;

namespace Notice.Tests;

/// <summary>The AppHost as a real process (`dotnet Notice.AppHost.dll ... --exit-when-done`, as
/// scripts/run.sh runs it) when its only worker cannot use its device: it stops waiting and exits
/// non-zero with the worker's one line.</summary>
[Collection(HeavyCpuCollection.Name)]
public sealed class AppHostFailureTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-apphost-fail-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task TheAppHostExitsNonZeroWhenItsOnlyWorkerCannotUseItsDevice()
    {
        if (TorchDevices.WhyNotUsable("cuda:0") is null) return;   // a CUDA build on a GPU machine: the worker would run
        var configuration = AppContext.BaseDirectory.Contains("/Release/") ? "Release" : "Debug";
        var dll = Path.Combine(Fixtures.Root, "Notice.AppHost", "bin", configuration, "net10.0", "Notice.AppHost.dll");
        var env = new Dictionary<string, string>
        {
            // Ports of its own, so that other AppHosts on this machine do not collide with it.
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{LocalRedisServer.FreePort()}",
            ["ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL"] = $"http://127.0.0.1:{LocalRedisServer.FreePort()}",
            ["ASPIRE_RESOURCE_SERVICE_ENDPOINT_URL"] = $"http://127.0.0.1:{LocalRedisServer.FreePort()}",
            ["ASPIRE_ALLOW_UNSECURED_TRANSPORT"] = "true",
            ["ASPNETCORE_ENVIRONMENT"] = "Development",
        };
        using var apphost = new ServiceProcess(dll, env,
            ["--devices", "cuda:0", "--exit-when-done", "--model", Fixtures.BlipTiny, "--pairs", Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"), "--out", Path.Combine(_dir, "run")]);
        await apphost.WaitForExitAsync(TimeSpan.FromMinutes(3));
        Assert.NotEqual(0, apphost.ExitCode);
        Assert.Contains($"notice: every worker failed: worker-0: error: worker worker-0: device cuda:0 is not usable: {TorchDevices.WhyNotUsable("cuda:0")}", apphost.Output);
        Assert.False(File.Exists(Path.Combine(_dir, "run", "report.html")));
    }
}
