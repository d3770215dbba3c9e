using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Notice.AppHost;

/// <summary>
/// Starts the application, prints where to watch the run and its progress, and at the end the
/// report's path; then either stops everything (--exit-when-done) or keeps the dashboards up until
/// Ctrl+C. A service the run depends on that exits before the run is complete (the coordinator
/// failing to plan, every worker gone, the aggregator) ends the run at once: its last error line is
/// printed and the AppHost exits non-zero, never waiting for ever.
/// </summary>
public static class RunWatcher
{
    public static async Task<int> RunAsync(DistributedApplication app, IResourceBuilder<ProjectResource> aggregator,
        IResourceBuilder<ProjectResource> coordinator, IReadOnlyList<IResourceBuilder<ProjectResource>> workers, AppHostOptions options)
    {
        await app.StartAsync();
        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStopping);
        var failure = new ServiceFailures(app, coordinator.Resource.Name, aggregator.Resource.Name, workers.Select(w => w.Resource.Name).ToList());
        var watching = failure.WatchAsync(stopping.Token);
        var url = aggregator.GetEndpoint("http").Url.TrimEnd('/');
        Console.WriteLine($"notice: run {options.Run}, model {options.Experiment.ModelDir}");
        Console.WriteLine($"notice: live run dashboard at {url}/ (the Aspire dashboard's login URL is printed above)");
        Console.WriteLine($"notice: results will be written to {options.Out}");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        string? report = null;
        var lastLine = "";
        var lastPrint = DateTime.MinValue;
        while (!stopping.IsCancellationRequested && report is null && failure.Message is null)
        {
            try
            {
                using var doc = JsonDocument.Parse(await http.GetStringAsync($"{url}/api/status", stopping.Token));
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
            if (report is null) await Task.Delay(1000, stopping.Token).ContinueWith(_ => { });
        }
        if (report is not null)
        {
            // The aggregator marks the run complete only after the report is written.
            Console.WriteLine($"notice: run complete; report: {report}");
        }
        else if (failure.Message is { } message)
        {
            Console.Error.WriteLine($"notice: {message}");
        }
        if (exitNow(options, report))
        {
            await stopping.CancelAsync();
            await watching.ContinueWith(_ => { });
            await app.StopAsync();
            await app.DisposeAsync();
            return report is not null && File.Exists(report) ? 0 : 1;
        }
        Console.WriteLine("notice: dashboards stay up; press Ctrl+C to stop");
        await app.WaitForShutdownAsync(CancellationToken.None);
        return 0;

        static bool exitNow(AppHostOptions o, string? report) => o.ExitWhenDone || report is null;
    }

    /// <summary>Watches the services' states and keeps each one's last error line; says why the run
    /// cannot complete once a service it needs has exited.</summary>
    private sealed class ServiceFailures(DistributedApplication app, string coordinator, string aggregator, IReadOnlyList<string> workers)
    {
        private readonly ConcurrentDictionary<string, string> _lastError = new();
        private readonly ConcurrentDictionary<string, int> _exited = new();
        private readonly ConcurrentDictionary<string, bool> _watchingLogs = new();
        private volatile string? _message;

        public string? Message => _message;

        public async Task WatchAsync(CancellationToken cancel)
        {
            var notifications = app.Services.GetRequiredService<ResourceNotificationService>();
            try
            {
                await foreach (var e in notifications.WatchAsync(cancel))
                {
                    var name = e.Resource.Name;
                    if (name != coordinator && name != aggregator && !workers.Contains(name)) continue;
                    if (_watchingLogs.TryAdd(e.ResourceId, true)) _ = WatchLogsAsync(name, e.ResourceId, cancel);
                    var state = e.Snapshot.State?.Text;
                    if (state is "Exited" or "Finished" or "FailedToStart")
                    {
                        _exited[name] = e.Snapshot.ExitCode ?? (state == "FailedToStart" ? -1 : 0);
                        // Let the last log lines arrive before reporting.
                        await Task.Delay(500, cancel);
                        Judge();
                    }
                }
            }
            catch (OperationCanceledException) { }
        }

        private void Judge()
        {
            if (_message is not null) return;
            string Why(string name) => _lastError.TryGetValue(name, out var line) ? line : $"exit code {_exited[name]}";
            if (_exited.TryGetValue(coordinator, out int c) && c != 0)
                _message = $"the coordinator failed (exit code {c}): {Why(coordinator)}";
            else if (_exited.TryGetValue(aggregator, out int a))
                _message = $"the aggregator exited (exit code {a}) before the run was complete: {Why(aggregator)}";
            else if (workers.Count > 0 && workers.All(w => _exited.TryGetValue(w, out int x) && x != 0))
                _message = $"every worker failed: {string.Join("; ", workers.Select(w => $"{w}: {Why(w)}"))}";
        }

        private async Task WatchLogsAsync(string name, string resourceId, CancellationToken cancel)
        {
            var logs = app.Services.GetRequiredService<ResourceLoggerService>();
            try
            {
                await foreach (var batch in logs.WatchAsync(resourceId).WithCancellation(cancel))
                    foreach (var line in batch)
                        if (line.Content.Contains("error: ", StringComparison.Ordinal))
                            _lastError[name] = line.Content[line.Content.IndexOf("error: ", StringComparison.Ordinal)..].Trim();
            }
            catch (OperationCanceledException) { }
        }
    }
}
