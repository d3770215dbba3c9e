using Microsoft.Playwright;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Distributed;

namespace Notice.Tests;

/// <summary>The services as real processes against a real redis-server: a worker killed mid-run,
/// and the aggregator's live dashboard in Debian's chromium.</summary>
public sealed class DistributedProcessTests : IDisposable
{
    private readonly LocalRedisServer _redis = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-proc-").FullName;

    public void Dispose()
    {
        _redis.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static ExperimentSpec Spec() => new()
    {
        ModelDir = Fixtures.BlipTiny,
        PairsPath = Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"),
        Modes = [CorruptionMode.Image, CorruptionMode.Text],
        Sites = [BlipSites.Mlp, BlipSites.Cross, BlipSites.AttnHeads, BlipSites.CrossHeads],
        Patching = new PatchingOptions { BatchSize = 8 },
    };

    private Dictionary<string, string> Env(string run, string worker) => new()
    {
        ["ConnectionStrings__redis"] = _redis.ConnectionString,
        ["Notice__Run"] = run,
        ["Notice__WorkerId"] = worker,
        ["Notice__ClaimIdleSeconds"] = "2",
        ["Notice__Out"] = Path.Combine(_dir, run),
    };

    [Fact]
    public async Task KillingAWorkerMidRunStillCompletesWithIdenticalResults()
    {
        using var redis = _redis.Connect();
        var (spec, _) = await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(), "kill");
        using var a = new ServiceProcess(ServiceProcess.ProgramPath(Fixtures.Root, "Notice.Worker"), Env("kill", "a"));
        using var b = new ServiceProcess(ServiceProcess.ProgramPath(Fixtures.Root, "Notice.Worker"), Env("kill", "b"));
        var keys = new RedisKeys("kill");
        var db = redis.GetDatabase();
        // Kill worker a once it has finished a shard and holds another.
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (DateTime.UtcNow < deadline)
        {
            var pending = await db.StreamPendingMessagesAsync(keys.Work, RedisKeys.WorkersGroup, 10, "a");
            if (await db.SetLengthAsync(keys.Done) >= 2 && pending.Length > 0) break;
            await Task.Delay(20);
        }
        a.Kill();
        Assert.True(a.HasExited);
        var outDir = Path.Combine(_dir, "kill-out");
        var aggregator = new RunAggregator(redis, "kill", outDir);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await aggregator.RunAsync(timeout.Token);
        Assert.True(aggregator.Complete, "run did not complete: " + b.Output);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        Assert.Equal(spec.TotalUnits, rows.Count);
        Assert.Equal(rows.Count, rows.Select(r => r.Key).Distinct().Count());
        Assert.Equal(spec.TotalShards, await db.StreamLengthAsync(keys.Results));
        var local = Path.Combine(_dir, "local");
        await new LocalRunner().RunAsync(Spec(), local, null, CancellationToken.None);
        var expected = ResultsTables.Read<ResultRow>(Path.Combine(local, ResultsTables.ResultsCsv)).ToDictionary(r => r.Key);
        foreach (var r in rows) Assert.Equal(expected[r.Key].LogitDiff, r.LogitDiff, 1e-5);
        await b.WaitForExitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task TheAggregatorDashboardShowsProgressAndHeatmaps()
    {
        using var redis = _redis.Connect();
        await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(), "live");
        int port = LocalRedisServer.FreePort();
        var env = Env("live", "agg");
        env["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        using var aggregator = new ServiceProcess(ServiceProcess.ProgramPath(Fixtures.Root, "Notice.Aggregator"), env);
        using var worker = new ServiceProcess(ServiceProcess.ProgramPath(Fixtures.Root, "Notice.Worker"), Env("live", "w"));

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(Browsers.Headless);
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1400, Height = 1000 } });
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try { await page.GotoAsync($"http://127.0.0.1:{port}/"); break; }
            catch (PlaywrightException) when (DateTime.UtcNow < deadline) { await Task.Delay(250); }
        }
        await page.Locator("#state.done").WaitForAsync(new() { Timeout = 120_000 });
        var progress = await page.Locator("#progress").InnerTextAsync();
        Assert.StartsWith("100.0%", progress);
        Assert.Contains("0 failed", progress);
        await page.WaitForFunctionAsync("() => [...document.querySelectorAll('img.heatmap')].some(i => i.complete && i.naturalWidth > 0)", null, new() { Timeout = 30_000 });
        Assert.True(await page.Locator("img.heatmap").CountAsync() >= 4);
        Assert.Contains("w", await page.Locator("#workers").InnerTextAsync());
        await page.ScreenshotAsync(new() { Path = Artifacts.PathFor("aggregator-dashboard.png"), FullPage = true });
        Assert.True(File.Exists(Path.Combine(_dir, "live", "report.html")), aggregator.Output);
    }
}

/// <summary>Chromium from Debian, headless, with the flags this closed network needs.</summary>
public static class Browsers
{
    public static BrowserTypeLaunchOptions Headless => new()
    {
        ExecutablePath = "/usr/bin/chromium",
        Headless = true,
        Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    };
}

/// <summary>Files tests keep for people to look at (screenshots): artifacts/ at the repository root.</summary>
public static class Artifacts
{
    public static string PathFor(string file)
    {
        var dir = Path.Combine(Fixtures.Root, "artifacts");
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, file);
    }
}
