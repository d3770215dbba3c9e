using System.Net;
using System.Text.Json;
using Microsoft.Playwright;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Distributed;

namespace Notice.Tests;

/// <summary>The aggregator's dashboard as a real process against a real redis-server, fed hostile
/// heartbeats: /api/status still answers and counts them, a worker id that is HTML is shown as text
/// in Debian's chromium, and every response carries a Content-Security-Policy without inline script.</summary>
public sealed class DashboardSecurityTests : IDisposable
{
    private readonly LocalRedisServer _redis = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-dash-").FullName;

    public void Dispose()
    {
        _redis.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private const string Xss = "<img src=x onerror=\"window.xss=1\">";

    [Fact]
    public async Task HostileHeartbeatsAreCountedAndAnHtmlWorkerIdIsShownAsText()
    {
        using var redis = _redis.Connect();
        var db = redis.GetDatabase();
        var keys = new RedisKeys("xss");
        await new RunPlanner(db).PlanAsync(new ExperimentSpec
        {
            ModelDir = Fixtures.BlipTiny, PairsPath = Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"), Modes = [CorruptionMode.Image], Sites = [BlipSites.Mlp],
        }, "xss");
        var beat = Wire.Write(new HeartbeatMessage { Worker = Xss, Device = "<b>cpu</b>", Host = "<script>window.xss=2</script>", UnitsDone = 3, LastSeenUtc = DateTime.UtcNow });
        await db.HashSetAsync(keys.Workers, Xss, beat);
        await db.StringSetAsync(keys.Worker(Xss), beat, TimeSpan.FromMinutes(5));
        await db.HashSetAsync(keys.Workers, "garbage", new byte[] { 0xc1, 0x67 });
        await db.HashSetAsync(keys.Workers, "empty", Array.Empty<byte>());
        await db.HashSetAsync(keys.Workers, "nan", Wire.Write(new HeartbeatMessage { Worker = "nan", Device = "cpu", Host = "h", UnitsPerSecond = double.NaN }));

        int port = LocalRedisServer.FreePort();
        var env = new Dictionary<string, string>
        {
            ["ConnectionStrings__redis"] = _redis.ConnectionString, ["Notice__Run"] = "xss", ["Notice__Out"] = Path.Combine(_dir, "xss"),
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}",
        };
        using var aggregator = new ServiceProcess(ServiceProcess.ProgramPath(Fixtures.Root, "Notice.Aggregator"), env);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
        HttpResponseMessage status;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try { status = await http.GetAsync("api/status"); break; }
            catch (HttpRequestException) when (DateTime.UtcNow < deadline && !aggregator.HasExited) { await Task.Delay(250); }
        }
        Assert.True(status.StatusCode == HttpStatusCode.OK, $"{status.StatusCode}: {aggregator.Output}");
        var json = JsonDocument.Parse(await status.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(3, json.GetProperty("badHeartbeats").GetInt32());
        Assert.Equal([Xss], json.GetProperty("workers").EnumerateArray().Select(w => w.GetProperty("worker").GetString()));
        Assert.Contains("script-src 'self'", string.Join(";", status.Headers.GetValues("Content-Security-Policy")));

        var page = await http.GetAsync("");
        var csp = string.Join(";", page.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("default-src 'none'", csp);
        Assert.DoesNotContain("unsafe-inline", csp);
        var html = await page.Content.ReadAsStringAsync();
        Assert.DoesNotContain("<script>", html);
        Assert.DoesNotContain("<style>", html);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("dashboard.js")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("health")).StatusCode);   // Development, as the AppHost runs it

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(Browsers.Headless);
        var tab = await browser.NewPageAsync();
        var violations = new List<string>();
        tab.Console += (_, m) => { if (m.Text.Contains("Content Security Policy")) lock (violations) violations.Add(m.Text); };
        await tab.GotoAsync($"http://127.0.0.1:{port}/");
        await tab.Locator("#workers tr").First.WaitForAsync(new() { Timeout = 30_000 });
        var cells = await tab.Locator("#workers td").AllInnerTextsAsync();
        Assert.Equal(Xss, cells[0]);
        Assert.Equal("<b>cpu</b>", cells[1]);
        Assert.Equal("<script>window.xss=2</script>", cells[2]);
        Assert.Equal(0, await tab.Locator("#workers img, #workers b, #workers script").CountAsync());
        Assert.Equal("undefined", await tab.EvaluateAsync<string>("() => typeof window.xss"));
        Assert.Contains("3 malformed heartbeats skipped", await tab.Locator("#bad-heartbeats").InnerTextAsync());
        // The page's own script and style load under its policy.
        Assert.Equal("rgb(42, 122, 176)", await tab.EvaluateAsync<string>("() => getComputedStyle(document.getElementById('fill')).backgroundColor"));
        await tab.ScreenshotAsync(new() { Path = Artifacts.PathFor("aggregator-dashboard-xss.png"), FullPage = true });
        Assert.Empty(violations);
        Assert.False(aggregator.HasExited, aggregator.Output);
    }

    [Fact]
    public async Task AnAggregatorThatCannotReadItsRunExitsWithOneLine()
    {
        using var redis = _redis.Connect();
        await redis.GetDatabase().StringSetAsync(new RedisKeys("broken").Spec, new byte[] { 0xc1, 0x67, 0x61, 0x72 });
        var env = new Dictionary<string, string>
        {
            ["ConnectionStrings__redis"] = _redis.ConnectionString, ["Notice__Run"] = "broken", ["Notice__Out"] = Path.Combine(_dir, "broken"),
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{LocalRedisServer.FreePort()}",
        };
        using var aggregator = new ServiceProcess(ServiceProcess.ProgramPath(Fixtures.Root, "Notice.Aggregator"), env);
        await aggregator.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, aggregator.ExitCode);
        var errors = aggregator.Output.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Contains("error", StringComparison.OrdinalIgnoreCase) || l.StartsWith("fail:") || l.Contains("   at ")).ToList();
        Assert.Equal(["error: aggregator: run broken: not a RunSpecMessage"], errors.Select(l => l[..Math.Min(l.Length, "error: aggregator: run broken: not a RunSpecMessage".Length)]));
    }
}
