using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Notice.Core.Results;

namespace Notice.Tests;

/// <summary>
/// The real AppHost, started by Aspire.Hosting.Testing: redis-server, coordinator, two workers and
/// the aggregator complete the fixture run; Debian's chromium logs into the Aspire dashboard and finds
/// every resource running and traces from a worker.
/// </summary>
[Collection(HeavyCpuCollection.Name)]
public sealed class AppHostTests : IDisposable
{
    private readonly string _out = Path.Combine(Directory.CreateTempSubdirectory("notice-apphost-").FullName, "apphost-run");

    public void Dispose() => Directory.Delete(Path.GetDirectoryName(_out)!, recursive: true);

    [Fact]
    public async Task TheAppHostCompletesARunAndItsDashboardShowsResourcesAndWorkerTraces()
    {
        var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.Notice_AppHost>(
            [
"--out", _out, "--devices", "cpu,cpu",
                "--model", Fixtures.BlipTiny, "--pairs", Path.Combine(Fixtures.BlipTiny, "pairs.jsonl")],
            (app, host) => { app.DisableDashboard = false; app.AllowUnsecuredTransport = true; });
        await using var app = await builder.BuildAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        await app.StartAsync(timeout.Token);
        var notifications = app.Services.GetRequiredService<ResourceNotificationService>();
        foreach (var r in new[] { "redis-server", "coordinator", "worker-0", "worker-1", "aggregator" })
            await notifications.WaitForResourceAsync(r, KnownResourceStates.Running, timeout.Token);

        // The run completes: the aggregator writes the report.
        var report = Path.Combine(_out, "report.html");
        while (!File.Exists(report)) await Task.Delay(250, timeout.Token);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(_out, ResultsTables.ResultsCsv));
        Assert.Equal(880, rows.Count);
        Assert.Equal(rows.Count, rows.Select(r => r.Key).Distinct().Count());

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(Browsers.Headless);
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1600, Height = 1000 } });
        // The dashboard is a resource of the app: its address and its login token come from the model.
        var dashboardResource = app.Services.GetRequiredService<DistributedApplicationModel>().Resources.Single(r => r.Name == "aspire-dashboard");
        var dashboard = dashboardResource.Annotations.OfType<EndpointAnnotation>().Single(e => e.Name == "http").AllocatedEndpoint!.UriString.TrimEnd('/');
#pragma warning disable CS0618 // its replacement (ExecutionConfigurationBuilder) needs an execution context the test does not have
        var token = (await ((IResourceWithEnvironment)dashboardResource).GetEnvironmentVariableValuesAsync())["DASHBOARD__FRONTEND__BROWSERTOKEN"];
#pragma warning restore CS0618
        await OpenResourcesPageAsync(page, dashboard, token!, ["redis-server", "coordinator", "worker-0", "worker-1", "aggregator"]);
        // The services that outlive the run show as running in their own grid rows (the page also holds
        // hidden "Running" labels of its state filter, so the state is looked up per row).
        foreach (var r in new[] { "redis-server", "aggregator" })
            await page.GetByRole(AriaRole.Row).Filter(new() { HasText = r }).Filter(new() { HasText = "Running" })
                .First.WaitForAsync(new() { Timeout = 30_000 });
        await page.ScreenshotAsync(new() { Path = Artifacts.PathFor("aspire-dashboard-resources.png"), FullPage = true });

        // Traces arrive over OTLP from the workers: the "shard" spans.
        var deadline = DateTime.UtcNow.AddSeconds(90);
        bool found = false;
        while (!found && DateTime.UtcNow < deadline)
        {
            await page.GotoAsync($"{dashboard}/traces?filters=");
            await page.Locator("input[name=traces-search]").FillAsync("run apphost-run");
            try
            {
                // The run's trace, started by the coordinator, holds spans of the workers.
                var runTrace = page.GetByRole(AriaRole.Row).Filter(new() { HasTextRegex = new System.Text.RegularExpressions.Regex("coordinator: run apphost-run") })
                    .Filter(new() { HasTextRegex = new System.Text.RegularExpressions.Regex(@"worker-[01] \(\d+\)") });
                await runTrace.First.WaitForAsync(new() { Timeout = 5_000 });
                found = true;
            }
            catch (TimeoutException) { }
        }
        await page.ScreenshotAsync(new() { Path = Artifacts.PathFor("aspire-dashboard-traces.png"), FullPage = true });
        Assert.True(found, "no traces from a worker in the Aspire dashboard");
    }

    /// <summary>
    /// Logs in and waits for the resources page to list every resource. The dashboard is a Blazor
    /// Server app: on a loaded machine its first circuit can stall, so a page that shows nothing
    /// within its time is saved as a screenshot and loaded afresh (login included), a few times.
    /// </summary>
    private static async Task OpenResourcesPageAsync(IPage page, string dashboard, string token, string[] resources)
    {
        const int attempts = 4;
        for (int attempt = 1; ; attempt++)
        {
            await page.GotoAsync($"{dashboard}/login?t={token}");
            await page.GotoAsync($"{dashboard}/");
            try
            {
                foreach (var r in resources)
                    await page.GetByText(r, new() { Exact = true }).First.WaitForAsync(new() { Timeout = 30_000 });
                return;
            }
            catch (TimeoutException) when (attempt < attempts)
            {
                await page.ScreenshotAsync(new() { Path = Artifacts.PathFor($"aspire-dashboard-attempt-{attempt}.png"), FullPage = true });
            }
        }
    }
}
