using System.Diagnostics;
using MessagePack;
using Notice.Core;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Distributed;
using OpenTelemetry;
using OpenTelemetry.Trace;
using StackExchange.Redis;

namespace Notice.Tests;

/// <summary>
/// The distributed run's parts (planner, workers, aggregator) against a real redis-server, in this
/// process: the same numbers as a local run, at-least-once delivery with effectively-once results,
/// dead letters, restarts, and traces.
/// </summary>
public sealed class DistributedRunTests : IDisposable
{
    private readonly LocalRedisServer _redis = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-dist-").FullName;

    public void Dispose()
    {
        _redis.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static ExperimentSpec Spec(string? pairs = null) => new()
    {
        ModelDir = Fixtures.BlipTiny,
        PairsPath = pairs ?? Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"),
        Modes = [CorruptionMode.Image, CorruptionMode.Text],
        Sites = [BlipSites.Mlp, BlipSites.CrossHeads],
        Patching = new PatchingOptions { BatchSize = 16 },
    };

    private static WorkerOptions Worker(string run, string id) => new()
    {
        RunId = run, WorkerId = id, ClaimIdle = TimeSpan.FromMilliseconds(800), KeepAlive = TimeSpan.FromMilliseconds(200),
        Heartbeat = TimeSpan.FromMilliseconds(300),
    };

    private async Task<List<ResultRow>> LocalRowsAsync(ExperimentSpec spec)
    {
        var outDir = Path.Combine(_dir, "local");
        await new LocalRunner().RunAsync(spec, outDir, null, CancellationToken.None);
        return ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
    }

    internal static void AssertSameUnits(List<ResultRow> expected, List<ResultRow> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        Assert.Equal(actual.Count, actual.Select(r => r.Key).Distinct().Count());
        var byKey = actual.ToDictionary(r => r.Key);
        foreach (var e in expected)
        {
            var a = byKey[e.Key];
            Assert.Equal(e.Token, a.Token);
            Assert.Equal(e.ProbPatched, a.ProbPatched, 1e-6);
            Assert.Equal(e.LogitDiff, a.LogitDiff, 1e-5);
            Assert.Equal(e.PatchingEffect, a.PatchingEffect, 1e-5);
        }
    }

    private async Task<RunAggregator> CompleteAsync(ConnectionMultiplexer redis, string run, string outDir, params Task[] workers)
    {
        var aggregator = new RunAggregator(redis, run, outDir);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await aggregator.RunAsync(timeout.Token);
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.True(aggregator.Complete, "the run did not complete in time");
        return aggregator;
    }

    /// <summary>The fixture's pairs plus a sample "poison" whose clean image is no image.</summary>
    private string PoisonedPairs()
    {
        foreach (var f in Directory.GetFiles(Fixtures.BlipTiny, "*.png")) File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(_dir, "poison.png"), "not an image");
        var lines = File.ReadAllLines(Path.Combine(Fixtures.BlipTiny, "pairs.jsonl")).ToList();
        lines.Add(lines[0].Replace("shapes-circle-color", "poison").Replace("\"image\":\"red_circle_blue_square.png\"", "\"image\":\"poison.png\""));
        var pairs = Path.Combine(_dir, "pairs.jsonl");
        File.WriteAllLines(pairs, lines);
        return pairs;
    }

    [Fact]
    public async Task AtpPlusExactWithTwoWorkersGivesTheLocalRows()
    {
        var experiment = Spec() with { Method = PatchMethod.AtpExact, ConfirmTop = 4 };
        using var redis = _redis.Connect();
        var (plan, enqueued) = await new RunPlanner(redis.GetDatabase()).PlanAsync(experiment, "ra");
        Assert.Equal((2 * 2, 2 * 2), (plan.TotalShards, enqueued));   // one atp shard per (sample, mode)
        var w1 = new WorkerLoop(redis, Worker("ra", "w1")).RunAsync(CancellationToken.None);
        using var redis2 = _redis.Connect();
        var w2 = new WorkerLoop(redis2, Worker("ra", "w2")).RunAsync(CancellationToken.None);
        var outDir = Path.Combine(_dir, "dist-atp");
        var aggregator = await CompleteAsync(redis, "ra", outDir, w1, w2);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        var local = await LocalRowsAsync(experiment);
        Assert.Contains(local, r => r.Method == "atp");
        Assert.Equal(2 * 2 * 2 * 4, local.Count(r => r.Method == "exact"));   // samples x modes x sites x 4 confirmed
        AssertSameUnits(local, rows);
        var byKey = rows.ToDictionary(r => r.Key);
        Assert.All(local, r => Assert.Equal(r.Values, byKey[r.Key].Values));   // bit for bit

        // The work stream: the atp shards the coordinator planned, then the exact confirmation shards the
        // workers added, one per (sample, mode), naming each of its two tables' top 4 units.
        var work = (await redis.GetDatabase().StreamRangeAsync(new RedisKeys("ra").Work)).Select(e => Wire.Read<ShardMessage>(e)).ToList();
        Assert.Equal(4 + 4, work.Count);
        Assert.All(work.Take(4), s => Assert.Equal((PatchMethod.Atp, (PatchSite?)null, ShardKey.AtpStage), (s.Method, s.Site, ShardKey.Parse(s.ShardId).Stage)));
        Assert.All(work.Skip(4), s => Assert.Equal((PatchMethod.Exact, 2 * 4, ShardKey.ConfirmStage), (s.Method, s.Units!.Length, ShardKey.Parse(s.ShardId).Stage)));
        var status = aggregator.Status();
        Assert.Equal((8, 8, 0L), (status.ShardsTotal, status.ShardsDone, status.UnitsFailed));
        Assert.Equal(plan.TotalUnits, status.UnitsDone);
        // Results say which method made them: the confirmation shards' rows are exact, the atp shards' atp.
        var results = (await redis.GetDatabase().StreamRangeAsync(new RedisKeys("ra").Results)).Select(e => Wire.Read<ShardResultMessage>(e)).ToList();
        Assert.All(results, r => Assert.All(r.Rows, row => Assert.Equal(r.ShardId.EndsWith("|atp") ? "atp" : "exact", row.Method)));
    }

    [Fact]
    public async Task AnAtpRunIsOneShardPerSampleAndModeAndAPoisonSampleFailsItsUnits()
    {
        var pairs = PoisonedPairs();
        foreach (var (method, run) in new[] { (PatchMethod.Atp, "rp1"), (PatchMethod.AtpExact, "rp2") })
        {
            var experiment = Spec(pairs) with { Method = method, ConfirmTop = 2 };
            using var redis = _redis.Connect();
            var (plan, _) = await new RunPlanner(redis.GetDatabase()).PlanAsync(experiment, run);
            Assert.Equal(3 * 2, plan.TotalShards);
            var worker = new WorkerLoop(redis, Worker(run, "w")).RunAsync(CancellationToken.None);
            var outDir = Path.Combine(_dir, run);
            var status = (await CompleteAsync(redis, run, outDir, worker)).Status();
            // The poison sample's two atp shards are dead (with every row they stood for, confirmations
            // included); no confirmation shard follows them; every other unit is done.
            Assert.Equal(2, status.ShardsDead);
            Assert.Equal(method == PatchMethod.AtpExact ? 6 + 4 : 6, status.ShardsTotal);
            Assert.Equal(plan.TotalUnits, status.UnitsDone + status.UnitsFailed);
            var failures = ResultsTables.Read<FailureRow>(Path.Combine(outDir, ResultsTables.FailuresCsv));
            Assert.Equal(2, failures.Count);
            Assert.All(failures, f => Assert.Equal(("poison", "*"), (f.Sample, f.Site)));
            var local = (await LocalRowsAsync(Spec() with { Method = method, ConfirmTop = 2 })).ToDictionary(r => r.Key);
            var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
            Assert.Equal(local.Count, rows.Count);
            Assert.All(rows, r => Assert.Equal(local[r.Key].Values, r.Values));
            Directory.Delete(Path.Combine(_dir, "local"), recursive: true);
        }
    }

    [Fact]
    public async Task UnitsAShardCouldNotRunAreReportedWithItsResults()
    {
        using var redis = _redis.Connect();
        var db = redis.GetDatabase();
        var keys = new RedisKeys("rf");
        var (plan, _) = await new RunPlanner(db).PlanAsync(Spec() with { Method = PatchMethod.Atp }, "rf");
        // As a worker writes an atp shard one of whose sites cannot be planned for its sample.
        foreach (var id in (await db.SetMembersAsync(keys.Planned)).Select(v => v.ToString()))
            await db.AppendOnceAsync(keys.Done, keys.Results, id, Wire.Write(new ShardResultMessage
            {
                ShardId = id, Worker = "w", Rows = [],
                Failed = [new DeadLetterMessage { SampleId = ShardKey.Parse(id).Sample, Mode = ShardKey.Parse(id).Mode, Site = "mlp", Units = 5, Error = "no position" }],
            }));
        var outDir = Path.Combine(_dir, "partial");
        var status = (await CompleteAsync(redis, "rf", outDir)).Status();
        Assert.Equal((plan.TotalShards, 0, 5L * plan.TotalShards), (status.ShardsDone, status.ShardsDead, status.UnitsFailed));
        var failures = ResultsTables.Read<FailureRow>(Path.Combine(outDir, ResultsTables.FailuresCsv));
        Assert.Equal(plan.TotalShards, failures.Count);
        Assert.All(failures, f => Assert.Equal(("mlp", "5 units: no position"), (f.Site, f.Error)));
        Assert.Equal(plan.SampleIds.ToHashSet(), failures.Select(f => f.Sample).ToHashSet());
    }

    [Fact]
    public async Task TwoWorkersGiveTheLocalResultsUnitForUnit()
    {
        using var redis = _redis.Connect();
        var (spec, enqueued) = await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(), "r1");
        Assert.Equal(spec.TotalShards, enqueued);
        var w1 = new WorkerLoop(redis, Worker("r1", "w1")).RunAsync(CancellationToken.None);
        using var redis2 = _redis.Connect();
        var w2 = new WorkerLoop(redis2, Worker("r1", "w2")).RunAsync(CancellationToken.None);
        var outDir = Path.Combine(_dir, "dist");
        await CompleteAsync(redis, "r1", outDir, w1, w2);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        AssertSameUnits(await LocalRowsAsync(Spec()), rows);
        Assert.Equal(4, ResultsTables.Read<BaselineRow>(Path.Combine(outDir, ResultsTables.BaselinesCsv)).Count);
        Assert.True(File.Exists(Path.Combine(outDir, ResultsTables.ResultsParquet)));
        // Both workers took part.
        var workers = (await redis.GetDatabase().StreamRangeAsync(new RedisKeys("r1").Results))
            .Select(e => MessagePackSerializer.Deserialize<ShardResultMessage>((byte[])e["m"]!).Worker).Distinct().ToList();
        Assert.Equal(2, workers.Count);
    }

    [Fact]
    public async Task ALlavaRunGivesTheLocalResults()
    {
        var spec = new ExperimentSpec
        {
            ModelDir = Fixtures.LlavaTiny,
            PairsPath = Path.Combine(Fixtures.LlavaTiny, "pairs.jsonl"),
            Modes = [CorruptionMode.Image, CorruptionMode.Text],
            Sites = new[] { "layer", "mlp", "heads:attn" }.Select(s => new LlavaFamily().Site(s)).ToList(),
        };
        using var redis = _redis.Connect();
        var (plan, _) = await new RunPlanner(redis.GetDatabase()).PlanAsync(spec, "llava");
        var worker = new WorkerLoop(redis, Worker("llava", "w")).RunAsync(CancellationToken.None);
        var outDir = Path.Combine(_dir, "llava");
        var aggregator = await CompleteAsync(redis, "llava", outDir, worker);
        Assert.Equal(plan.TotalUnits, aggregator.Status().UnitsDone);
        AssertSameUnits(await LocalRowsAsync(spec), ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv)));
    }

    [Fact]
    public async Task PlanningTwiceEnqueuesNothingTwice()
    {
        using var redis = _redis.Connect();
        var planner = new RunPlanner(redis.GetDatabase());
        var (spec, first) = await planner.PlanAsync(Spec(), "r2");
        var (_, second) = await planner.PlanAsync(Spec(), "r2");
        Assert.Equal(spec.TotalShards, first);
        Assert.Equal(0, second);
        Assert.Equal(spec.TotalShards, await redis.GetDatabase().StreamLengthAsync(new RedisKeys("r2").Work));
    }

    [Fact]
    public async Task AShardRedeliveredAfterItsWriteAddsNothing()
    {
        using var redis = _redis.Connect();
        var (spec, _) = await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(), "r3");
        string? victim = null;
        // The first worker dies after writing its first shard's results, before XACK.
        var dying = new WorkerLoop(redis, Worker("r3", "dies") with { DieAfterWrite = s => { victim ??= s; return true; } }).RunAsync(CancellationToken.None);
        await dying.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.NotNull(victim);
        using var redis2 = _redis.Connect();
        var survivor = new WorkerLoop(redis2, Worker("r3", "lives")).RunAsync(CancellationToken.None);
        var outDir = Path.Combine(_dir, "redelivered");
        await CompleteAsync(redis, "r3", outDir, survivor);
        var db = redis.GetDatabase();
        var keys = new RedisKeys("r3");
        Assert.Equal(spec.TotalShards, await db.StreamLengthAsync(keys.Results));
        Assert.Equal(0, (await db.StreamPendingAsync(keys.Work, RedisKeys.WorkersGroup)).PendingMessageCount);
        AssertSameUnits(await LocalRowsAsync(Spec()), ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv)));
    }

    [Fact]
    public async Task APoisonSampleEndsInTheDeadLetterStreamAndTheRunCompletes()
    {
        var pairs = PoisonedPairs();
        using var redis = _redis.Connect();
        var (spec, _) = await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(pairs), "r4");
        // The planner ships only images into Redis: the poison file's bytes never leave this machine.
        var stored = Wire.Read<SampleMessage>((byte[])(await redis.GetDatabase().HashGetAsync(new RedisKeys("r4").Samples, "poison"))!);
        Assert.Empty(stored.Image);
        Assert.NotEmpty(stored.CorruptImage);
        var worker = new WorkerLoop(redis, Worker("r4", "w")).RunAsync(CancellationToken.None);
        var outDir = Path.Combine(_dir, "poisoned");
        var aggregator = await CompleteAsync(redis, "r4", outDir, worker);
        var dead = await redis.GetDatabase().StreamRangeAsync(new RedisKeys("r4").Dead);
        var letters = dead.Select(e => MessagePackSerializer.Deserialize<DeadLetterMessage>((byte[])e["m"]!)).ToList();
        Assert.NotEmpty(letters);
        Assert.All(letters, d => Assert.Equal("poison", d.SampleId));
        Assert.Contains("poison.png", letters[0].Error);
        var status = aggregator.Status();
        Assert.Equal(letters.Sum(d => d.Units), status.UnitsFailed);
        Assert.Equal(spec.TotalUnits, status.UnitsDone + status.UnitsFailed);
        var failures = ResultsTables.Read<FailureRow>(Path.Combine(outDir, ResultsTables.FailuresCsv));
        Assert.Equal(letters.Count, failures.Count);
        AssertSameUnits(await LocalRowsAsync(Spec()), ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv)));
    }

    [Fact]
    public async Task CoordinatorAndAggregatorRestartsLoseNothing()
    {
        using var redis = _redis.Connect();
        await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(), "r5");
        // A first aggregator sees part of the run, then goes away.
        var first = new RunAggregator(redis, "r5", Path.Combine(_dir, "agg"));
        await first.RebuildAsync();
        using var stopWorker = new CancellationTokenSource();
        var worker = new WorkerLoop(redis, Worker("r5", "w")).RunAsync(stopWorker.Token);
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (first.Status().ShardsDone < 3 && DateTime.UtcNow < deadline) { await first.PollAsync(); await Task.Delay(20); }
        Assert.True(first.Status().ShardsDone >= 3);
        // The coordinator restarts and plans again: nothing is added twice.
        var (_, again) = await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(), "r5");
        Assert.Equal(0, again);
        // A new aggregator rebuilds from Redis and finishes the run.
        var outDir = Path.Combine(_dir, "agg");
        await CompleteAsync(redis, "r5", outDir, worker);
        AssertSameUnits(await LocalRowsAsync(Spec()), ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv)));
    }

    [Fact]
    public async Task ShardSpansAreChildrenOfTheRunTrace()
    {
        var spans = new List<Activity>();
        using var tracer = Sdk.CreateTracerProviderBuilder().AddSource(NoticeTelemetry.Name).AddInMemoryExporter(spans).Build();
        using var redis = _redis.Connect();
        ActivityTraceId trace;
        ActivitySpanId runSpan;
        using (var run = NoticeTelemetry.Source.StartActivity("run"))
        {
            Assert.NotNull(run);
            trace = run.TraceId;
            runSpan = run.SpanId;
            await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(), "r6");
        }
        // The worker runs with no ambient activity: its parent comes from the message's traceparent.
        var worker = Task.Run(() => new WorkerLoop(redis, Worker("r6", "w")).RunAsync(CancellationToken.None));
        await CompleteAsync(redis, "r6", Path.Combine(_dir, "traced"), worker);
        tracer.ForceFlush();
        // Other tests run at the same time and their spans reach this listener too: keep this run's.
        var shards = spans.Where(s => s.DisplayName == "shard" && (string?)s.GetTagItem("notice.run") == "r6").ToList();
        Assert.NotEmpty(shards);
        Assert.All(shards, s => { Assert.Equal(trace, s.TraceId); Assert.Equal(runSpan, s.ParentSpanId); });
        var batches = spans.Where(s => s.DisplayName == "patched batch" && s.TraceId == trace).ToList();
        Assert.NotEmpty(batches);
        Assert.Contains(spans, s => s.DisplayName == "clean and corrupt runs" && s.TraceId == trace);
    }
}
