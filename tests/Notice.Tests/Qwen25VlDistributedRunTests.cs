using Notice.Core.Experiments;
using Notice.Core.Families.Qwen25Vl;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Distributed;
using StackExchange.Redis;

namespace Notice.Tests;

/// <summary>The distributed run (planner, two workers, aggregator in this process, against a real
/// redis-server) of the Qwen2.5-VL fixture gives the local run's rows unit for unit.</summary>
public sealed class Qwen25VlDistributedRunTests : IDisposable
{
    private readonly LocalRedisServer _redis = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-qwen-dist-").FullName;

    public void Dispose()
    {
        _redis.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static WorkerOptions Worker(string run, string id) => new()
    {
        RunId = run, WorkerId = id, ClaimIdle = TimeSpan.FromMilliseconds(800), KeepAlive = TimeSpan.FromMilliseconds(200),
        Heartbeat = TimeSpan.FromMilliseconds(300),
    };

    [Fact]
    public async Task AQwenRunGivesTheLocalResults()
    {
        // Text and noise: both fixture samples run in both modes (yesno's corrupt image has another size).
        var spec = new ExperimentSpec
        {
            ModelDir = QwenTinyModel.Folder,
            PairsPath = Path.Combine(QwenTinyModel.Folder, "pairs.jsonl"),
            Modes = [CorruptionMode.Text, CorruptionMode.Noise],
            Sites = new Qwen25VlFamily().DefaultSites,
            Patching = new PatchingOptions { BatchSize = 16 },
        };
        using var redis = _redis.Connect();
        var (plan, _) = await new RunPlanner(redis.GetDatabase()).PlanAsync(spec, "qwen");
        var w1 = new WorkerLoop(redis, Worker("qwen", "w1")).RunAsync(CancellationToken.None);
        using var redis2 = _redis.Connect();
        var w2 = new WorkerLoop(redis2, Worker("qwen", "w2")).RunAsync(CancellationToken.None);
        var outDir = Path.Combine(_dir, "dist");
        var aggregator = new RunAggregator(redis, "qwen", outDir);
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3)))
            await aggregator.RunAsync(timeout.Token);
        await Task.WhenAll(w1, w2).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.True(aggregator.Complete, "the run did not complete in time");
        Assert.Equal(plan.TotalUnits, aggregator.Status().UnitsDone);
        Assert.Equal(2 * ((3 * 33 * 3 + 12) + (3 * 31 * 3 + 12)), plan.TotalUnits);

        var localDir = Path.Combine(_dir, "local");
        await new LocalRunner().RunAsync(spec, localDir, null, CancellationToken.None);
        var expected = ResultsTables.Read<ResultRow>(Path.Combine(localDir, ResultsTables.ResultsCsv));
        var actual = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        Assert.Equal(expected.Count, actual.Count);
        var byKey = actual.ToDictionary(r => r.Key);
        foreach (var e in expected)
        {
            var a = byKey[e.Key];
            Assert.Equal(e.Token, a.Token);
            Assert.Equal(e.ProbPatched, a.ProbPatched, 1e-6);
            Assert.Equal(e.LogitDiff, a.LogitDiff, 1e-5);
            double scale = Math.Abs(e.LogitDiff) > 1e-9 ? Math.Max(1, Math.Abs(e.PatchingEffect / e.LogitDiff)) : 1;
            Assert.True(Math.Abs(e.PatchingEffect - a.PatchingEffect) <= 1e-5 * scale, $"{e.Key}: local {e.PatchingEffect} vs distributed {a.PatchingEffect}");
        }
    }
}
