using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using System.Net.Http.Json;
using System.Text.Json;

namespace Notice.AppHost;

/// <summary>
/// Starts the application, prints where to watch the run and its progress, and at the end the
/// report's path; then either stops everything (--exit-when-done) or keeps the dashboards up until Ctrl+C.
/// </summary>
public static class RunWatcher
{
    public static async Task<int> RunAsync(DistributedApplication app, IResourceBuilder<ProjectResource> aggregator, Experiment experiment, bool exitWhenDone)
    {
        await app.StartAsync();
        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        var stopping = lifetime.ApplicationStopping;
        var url = aggregator.GetEndpoint("http").Url.TrimEnd('/');
        Console.WriteLine($"notice: run {experiment.Run}, model {experiment.Model}");
        Console.WriteLine($"notice: live run dashboard at {url}/ (the Aspire dashboard's login URL is printed above)");
        Console.WriteLine($"notice: results will be written to {experiment.Out}");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        string? report = null;
        var lastLine = "";
        var lastPrint = DateTime.MinValue;
        while (!stopping.IsCancellationRequested && report is null)
        {
            try
            {
                using var doc = JsonDocument.Parse(await http.GetStringAsync($"{url}/api/status", stopping));
                var run = doc.RootElement.GetProperty("run");
                long total = run.GetProperty("unitsTotal").GetInt64(), done = run.GetProperty("unitsDone").GetInt64(), failed = run.GetProperty("unitsFailed").GetInt64();
                var line = total == 0 ? "notice: waiting for the coordinator's plan"
                    : $"notice: {done + failed}/{total} units ({100.0 * (done + failed) / total:F1}%), {failed} failed, {run.GetProperty("unitsPerSecond").GetDouble():F1} units/s";
                if (line != lastLine && (DateTime.UtcNow - lastPrint).TotalSeconds >= 5)
                {
                    Console.WriteLine(line);
                    lastLine = line;
                    lastPrint = DateTime.UtcNow;
                }
                if (run.GetProperty("complete").GetBoolean()) report = run.GetProperty("report").GetString();
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException or InvalidOperationException)
            {
                // The aggregator is still starting (or restarting): ask again.
            }
            if (report is null) await Task.Delay(1000, stopping).ContinueWith(_ => { });
        }
        if (report is not null)
        {
            // The aggregator writes the report right after marking the run complete.
            for (int i = 0; i < 60 && !File.Exists(report) && !stopping.IsCancellationRequested; i++) await Task.Delay(500);
            Console.WriteLine($"notice: run complete; report: {report}");
        }
        if (exitWhenDone || report is null)
        {
            await app.StopAsync();
            await app.DisposeAsync();
            return report is not null && File.Exists(report) ? 0 : 1;
        }
        Console.WriteLine("notice: dashboards stay up; press Ctrl+C to stop");
        await app.WaitForShutdownAsync(CancellationToken.None);
        return 0;
    }
}
