using System.Text;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Distributed;
using Notice.Vlm;
using StackExchange.Redis;

namespace Notice.Tests;

/// <summary>
/// Hostile stream entries against a real redis-server, with the planner, workers and aggregator in
/// this process: garbage in the work, results and dead-letter streams and in the heartbeats never
/// stops a service, bad work and results entries end acknowledged in the dead-letter stream with
/// the reason, and the run completes with the local run's numbers. And a worker on a device it
/// cannot use fails at start in one line.
/// </summary>
public sealed class StreamHostileInputTests : IDisposable
{
    private readonly LocalRedisServer _redis = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-hostile-").FullName;

    public void Dispose()
    {
        _redis.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static ExperimentSpec Spec(bool small) => new()
    {
        ModelDir = Fixtures.BlipTiny,
        PairsPath = Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"),
        Modes = small ? [CorruptionMode.Image] : [CorruptionMode.Image, CorruptionMode.Text],
        Sites = small ? [BlipSites.Mlp] : [BlipSites.Mlp, BlipSites.CrossHeads],
        Patching = new PatchingOptions { BatchSize = 16 },
    };

    private static WorkerOptions Worker(string run, string id) => new()
    {
        RunId = run, WorkerId = id, ClaimIdle = TimeSpan.FromMilliseconds(800), KeepAlive = TimeSpan.FromMilliseconds(200),
        Heartbeat = TimeSpan.FromMilliseconds(300),
    };

    /// <summary>Not MessagePack, nothing, MessagePack of another message, and an empty array (a message of defaults).</summary>
    private static byte[][] Garbage(object wrongType) =>
    [
        [0xc1, .. Encoding.ASCII.GetBytes("garbage")],
        [],
        Wire.Write(wrongType),
        [0x90],
    ];

    private static readonly HeartbeatMessage AHeartbeat = new() { Worker = "w", Device = "cpu", Host = "h", LastSeenUtc = DateTime.UtcNow };
    private static readonly ShardMessage AShard = new() { RunId = "x", ShardId = "s|image|mlp", SampleId = "s", Site = BlipSites.Mlp };

    private static async Task<List<RedisValue>> AddAsync(IDatabase db, string stream, IEnumerable<byte[]> entries)
    {
        var ids = new List<RedisValue>();
        foreach (var e in entries) ids.Add(await db.StreamAddAsync(stream, "m", e));
        return ids;
    }

    private static async Task PoisonHeartbeatsAsync(IDatabase db, RedisKeys keys)
    {
        int i = 0;
        foreach (var g in Garbage(AShard)) await db.HashSetAsync(keys.Workers, $"bad{i++}", g);
        // A heartbeat filed under another worker's name, one with a number JSON cannot carry, and a garbage live key.
        await db.HashSetAsync(keys.Workers, "impostor", Wire.Write(AHeartbeat));
        await db.HashSetAsync(keys.Workers, "nan", Wire.Write(new HeartbeatMessage { Worker = "nan", Device = "cpu", Host = "h", UnitsPerSecond = double.NaN }));
        await db.StringSetAsync(keys.Worker("bad0"), new byte[] { 0xc1 });
    }

    private static async Task<List<DeadLetterMessage>> LettersAsync(IDatabase db, RedisKeys keys) =>
        (await db.StreamRangeAsync(keys.Dead)).Select(e => { try { return Wire.Read<DeadLetterMessage>(e); } catch (InvalidDataException) { return null; } })
            .Where(d => d is not null && d.ShardId.StartsWith("malformed ", StringComparison.Ordinal)).ToList()!;

    private async Task<List<ResultRow>> LocalRowsAsync(ExperimentSpec spec)
    {
        var outDir = Path.Combine(_dir, "local");
        await new LocalRunner().RunAsync(spec, outDir, null, CancellationToken.None);
        return ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
    }

    [Fact]
    public async Task GarbageInEveryStreamIsDeadLetteredAndTheRunCompletes()
    {
        using var redis = _redis.Connect();
        var db = redis.GetDatabase();
        var keys = new RedisKeys("hostile");
        var (spec, _) = await new RunPlanner(db).PlanAsync(Spec(small: true), "hostile");
        // Before any service reads them: garbage first in every stream, and an entry without the message field.
        var badWork = await AddAsync(db, keys.Work, Garbage(AHeartbeat));
        badWork.Add(await db.StreamAddAsync(keys.Work, "x", "no m field"));
        // Shards that decode but contradict themselves: an atp shard naming a site, an exact shard naming
        // neither site nor units, more units than it says, an unknown method, a unit without its site.
        var planned = (await db.SetMembersAsync(keys.Planned))[0].ToString();
        ShardMessage Shard(Action<ShardMessage> set) { var m = new ShardMessage { RunId = "hostile", ShardId = planned, SampleId = "s", Site = BlipSites.Mlp }; set(m); return m; }
        badWork.AddRange(await AddAsync(db, keys.Work, new[]
        {
            Shard(m => m.Method = PatchMethod.Atp), Shard(m => m.Site = null), Shard(m => { m.Site = null; m.Units = [new(BlipSites.Mlp, 0, -1, 0)]; }),
            Shard(m => m.Method = (PatchMethod)7), Shard(m => { m.Site = null; m.Units = [null!]; m.EstimatedUnits = 1; }),
        }.Select(Wire.Write)));
        var badResults = await AddAsync(db, keys.Results, Garbage(AShard));
        // A shard result of a shard that is not planned must not count towards the run.
        badResults.AddRange(await AddAsync(db, keys.Results, [Wire.Write(new ShardResultMessage { ShardId = "nowhere|image|mlp", Rows = [] })]));
        // Failed units that are no count.
        badResults.AddRange(await AddAsync(db, keys.Results, [Wire.Write(new ShardResultMessage { ShardId = "x", Rows = [], Failed = [new DeadLetterMessage { Units = -3 }] })]));
        await AddAsync(db, keys.Dead, Garbage(AShard));
        await AddAsync(db, keys.Dead, [Wire.Write(new DeadLetterMessage { ShardId = "nowhere|image|mlp", Units = 5 })]);
        await PoisonHeartbeatsAsync(db, keys);

        var worker = new WorkerLoop(redis, Worker("hostile", "w")).RunAsync(CancellationToken.None);
        var outDir = Path.Combine(_dir, "hostile");
        var aggregator = new RunAggregator(redis, "hostile", outDir);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await aggregator.RunAsync(timeout.Token);
        await worker.WaitAsync(TimeSpan.FromMinutes(1));   // ends normally: nothing thrown

        Assert.True(aggregator.Complete, "the run did not complete");
        var status = aggregator.Status();
        Assert.Equal(spec.TotalUnits, status.UnitsDone);
        Assert.Equal(0, status.UnitsFailed);
        Assert.Equal(spec.TotalShards, status.ShardsDone);
        DistributedRunTests.AssertSameUnits(await LocalRowsAsync(Spec(small: true)), ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv)));

        // Every bad work and results entry is in the dead-letter stream, once, with its reason; none is pending.
        var letters = await LettersAsync(db, keys);
        foreach (var id in badWork)
            Assert.Contains(letters, d => d.ShardId == $"malformed entry {id}" && d.Error.StartsWith($"malformed work entry {id}: ", StringComparison.Ordinal));
        foreach (var id in badResults)
            Assert.Contains(letters, d => d.ShardId == $"malformed result {id}" && d.Error.StartsWith($"malformed results entry {id}: ", StringComparison.Ordinal));
        Assert.Equal(badWork.Count + badResults.Count, letters.Count);
        Assert.Contains(letters, d => d.Error.Contains("not planned"));
        Assert.Equal(0, (await db.StreamPendingAsync(keys.Work, RedisKeys.WorkersGroup)).PendingMessageCount);
        Assert.Equal(0, (await db.StreamPendingAsync(keys.Results, RedisKeys.AggregatorGroup)).PendingMessageCount);
        // The malformed entries are reported with the failures, as no units of the plan.
        var failures = ResultsTables.Read<FailureRow>(Path.Combine(outDir, ResultsTables.FailuresCsv));
        Assert.Equal(letters.Count, failures.Count);
        Assert.All(failures, f => Assert.StartsWith("0 units: malformed ", f.Error));

        // The dashboard's worker list: the real worker, the bad heartbeats counted, never an exception.
        var (workers, bad) = await WorkerHeartbeats.ReadAsync(db, keys);
        Assert.Equal(["w"], workers.Select(w => w.Worker));
        Assert.Equal(6, bad);
    }

    [Fact]
    public async Task AChaosRunWithGarbageInjectedMidRunMatchesTheLocalRun()
    {
        using var redis = _redis.Connect();
        using var redis2 = _redis.Connect();
        var db = redis.GetDatabase();
        var keys = new RedisKeys("chaos");
        var (spec, _) = await new RunPlanner(db).PlanAsync(Spec(small: false), "chaos");
        // Mid-run for certain: from the second shard written on, workers wait (after writing, before
        // acknowledging) until the garbage is in.
        int written = 0;
        using var gate = new ManualResetEventSlim();
        bool Hold(string _)
        {
            if (Interlocked.Increment(ref written) >= 2) gate.Wait(TimeSpan.FromMinutes(1));
            return false;
        }
        var w1 = Task.Run(() => new WorkerLoop(redis, Worker("chaos", "w1") with { DieAfterWrite = Hold }).RunAsync(CancellationToken.None));
        var w2 = Task.Run(() => new WorkerLoop(redis2, Worker("chaos", "w2") with { DieAfterWrite = Hold }).RunAsync(CancellationToken.None));
        var outDir = Path.Combine(_dir, "chaos");
        var aggregator = new RunAggregator(redis, "chaos", outDir);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var aggregating = aggregator.RunAsync(timeout.Token);

        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (Volatile.Read(ref written) < 2 && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.True(await db.SetLengthAsync(keys.Done) is >= 2 and var done && done < spec.TotalShards, "not mid-run");
        var badWork = await db.StreamAddAsync(keys.Work, "m", (byte[])[0xc1, .. Encoding.ASCII.GetBytes("garbage")]);
        var badResult = await db.StreamAddAsync(keys.Results, "m", Wire.Write(AShard));
        await db.StreamAddAsync(keys.Dead, "m", (byte[])[0x90]);
        await db.HashSetAsync(keys.Workers, "w1", (byte[])[0xc1]);   // overwritten by w1's next heartbeat
        await db.HashSetAsync(keys.Workers, "ghost", Wire.Write(AShard));
        gate.Set();

        await aggregating;
        await Task.WhenAll(w1, w2).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.True(aggregator.Complete, "the run did not complete");
        Assert.Equal(spec.TotalUnits, aggregator.Status().UnitsDone);
        DistributedRunTests.AssertSameUnits(await LocalRowsAsync(Spec(small: false)), ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv)));
        var letters = await LettersAsync(db, keys);
        Assert.Contains(letters, d => d.ShardId == $"malformed entry {badWork}" && d.Error.Contains("not a ShardMessage"));
        Assert.Contains(letters, d => d.ShardId == $"malformed result {badResult}" && d.Error.Contains("not a ShardResultMessage"));
        Assert.Equal(2, letters.Count);
        Assert.Equal(0, (await db.StreamPendingAsync(keys.Work, RedisKeys.WorkersGroup)).PendingMessageCount);
        var (workers, bad) = await WorkerHeartbeats.ReadAsync(db, keys);
        Assert.Equal(["w1", "w2"], workers.Select(w => w.Worker));
        Assert.Equal(1, bad);
    }

    [Fact]
    public async Task AWorkerThatCannotReadItsRunFailsWithTheReason()
    {
        using var redis = _redis.Connect();
        await redis.GetDatabase().StringSetAsync(new RedisKeys("broken").Spec, Wire.Write(AShard));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() =>
            new WorkerLoop(redis, Worker("broken", "w")).RunAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.StartsWith("not a RunSpecMessage", e.Message);
        Assert.True(Notice.Core.InputErrors.IsInputError(e));   // WorkerService prints it as its one line
    }

    [Fact]
    public async Task AWorkerOnAnUnusableDeviceFailsAtStartInOneLine()
    {
        string reason = TorchDevices.Build == "cpu"
            ? "this build of Notice uses TorchSharp-cpu (build with -p:NoticeTorch=cuda on a machine with CUDA)"
            : "no CUDA device is visible";
        using var redis = _redis.Connect();
        // No run is planned: the worker fails before it waits for one.
        var e = await Assert.ThrowsAsync<DeviceException>(() =>
            new WorkerLoop(redis, Worker("nodevice", "worker-0") with { Device = "cuda:0" }).RunAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)));
        if (TorchSharp.torch.cuda.is_available()) return;   // a GPU machine with a CUDA build: nothing to refuse
        Assert.Equal($"device cuda:0 is not usable: {reason}", e.Message);
        Assert.True(Notice.Core.InputErrors.IsInputError(e));
        var (spec, _) = await new RunPlanner(redis.GetDatabase()).PlanAsync(Spec(small: true), "nodevice");
        var r = Assert.Throws<DeviceException>(() => new ShardRunner(spec, device: "cuda:0"));
        Assert.Equal(e.Message, r.Message);
        Assert.Contains("not a device name", Assert.Throws<DeviceException>(() => TorchDevices.Require("cuda:x")).Message);
        Assert.Null(TorchDevices.WhyNotUsable("cpu"));

        // The worker service: that one line on stderr, and a non-zero exit.
        var env = new Dictionary<string, string>
        {
            ["ConnectionStrings__redis"] = _redis.ConnectionString, ["Notice__Run"] = "nodevice", ["Notice__WorkerId"] = "worker-0", ["Notice__Device"] = "cuda:0",
        };
        using var process = new ServiceProcess(ServiceProcess.ProgramPath(Fixtures.Root, "Notice.Worker"), env);
        await process.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, process.ExitCode);
        var errors = process.Output.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Contains("error", StringComparison.OrdinalIgnoreCase) || l.StartsWith("fail:") || l.Contains("   at ")).ToList();
        Assert.Equal([$"error: worker worker-0: device cuda:0 is not usable: {reason}"], errors);
    }
}
