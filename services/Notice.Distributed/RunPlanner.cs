using System.Diagnostics;
using MessagePack;
using Notice.Core;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm;
using StackExchange.Redis;

namespace Notice.Distributed;

/// <summary>
/// The coordinator's work: stores a run (its spec and its samples, image bytes included) in Redis
/// and adds its shards to the run's work stream. Planning is idempotent: a shard id is added to the
/// planned set and its message to the stream in one Lua script, so planning the same run twice
/// (a restarted coordinator) enqueues nothing twice.
/// </summary>
public sealed class RunPlanner(IDatabase db)
{
    /// <returns>the stored spec and how many shards this call enqueued</returns>
    public async Task<(RunSpecMessage Spec, int Enqueued)> PlanAsync(ExperimentSpec spec, string runId, CancellationToken cancel = default)
    {
        var keys = new RedisKeys(runId);
        // Sites were parsed as BLIP's by name; the run's model decides what a name means.
        spec = spec with { Sites = spec.Sites.Select(s => PatchSite.Parse(s.Name, VlmModel.ArchitectureOf(spec.ModelDir))).ToList() };
        // Shards are children of the caller's run span, not of the planning span below.
        var runTrace = Activity.Current?.Id ?? "";
        using var span = NoticeTelemetry.Source.StartActivity("plan run", ActivityKind.Producer);
        var records = PairsManifest.Read(spec.PairsPath, checkImages: false).ToList();
        if (spec.Samples is { } n) records = records.Take(n).ToList();
        // Tokenizer and config only: the coordinator never loads the weights (a 7B model stays on the workers).
        var estimate = UnitEstimator.For(spec);

        // One trace per run: a re-planning coordinator keeps the trace it started first.
        var existing = await db.StringGetAsync(keys.Spec);
        string traceParent = existing.HasValue
            ? MessagePackSerializer.Deserialize<RunSpecMessage>((byte[])existing!).TraceParent
            : runTrace;

        await EnsureGroupAsync(keys.Work, RedisKeys.WorkersGroup);
        await EnsureGroupAsync(keys.Results, RedisKeys.AggregatorGroup);

        var shards = new List<ShardMessage>();
        foreach (var r in records)
        {
            cancel.ThrowIfCancellationRequested();
            await db.HashSetAsync(keys.Samples, r.Id, MessagePackSerializer.Serialize(ToMessage(spec.PairsPath, r)));
            foreach (var mode in spec.Modes)
                foreach (var site in spec.Sites)
                {
                    string modeName = mode.ToString().ToLowerInvariant();
                    // Head sites split by layer: shards of comparable size spread over more workers.
                    var layers = site.PerHead ? (spec.Layers ?? Enumerable.Range(0, estimate.Layers).ToList()).Select(l => (int?)l) : [null];
                    foreach (var layer in layers)
                        shards.Add(new ShardMessage
                        {
                            RunId = runId, ShardId = new ShardKey(r.Id, modeName, site.Name, layer).ToString(),
                            SampleId = r.Id, Mode = modeName, Site = site.Name, Layer = layer ?? -1, TraceParent = traceParent,
                            EstimatedUnits = (int)(estimate.Units(r, site) / (layer is null ? 1 : spec.Layers?.Count ?? estimate.Layers)),
                        });
                }
        }
        var message = new RunSpecMessage
        {
            RunId = runId, Model = Path.GetFullPath(spec.ModelDir), ModelName = Path.GetFileName(Path.GetFullPath(spec.ModelDir).TrimEnd('/')),
            Modes = spec.Modes.Select(m => m.ToString().ToLowerInvariant()).ToArray(), Sites = spec.Sites.Select(s => s.Name).ToArray(),
            Layers = spec.Layers?.ToArray(), Heads = spec.Heads?.ToArray(), Positions = spec.Positions.ToString(),
            Compat = spec.Patching.Compat.ToString().ToLowerInvariant(), BatchSize = spec.Patching.BatchSize,
            NoiseMultiple = spec.Patching.NoiseMultiple, NoiseSeed = spec.Patching.NoiseSeed, TraceParent = traceParent,
            TotalUnits = shards.Sum(s => (long)s.EstimatedUnits), TotalShards = shards.Count,
            SampleIds = records.Select(r => r.Id).ToArray(), PairsSha256 = Provenance.Sha256(spec.PairsPath),
        };
        // The spec goes in before the shards, so whoever reads a shard finds its run.
        await db.StringSetAsync(keys.Spec, MessagePackSerializer.Serialize(message));
        await db.SetAddAsync(RedisKeys.Runs, runId);
        int enqueued = 0;
        foreach (var shard in shards)
        {
            if (await db.AppendOnceAsync(keys.Planned, keys.Work, shard.ShardId, MessagePackSerializer.Serialize(shard))) enqueued++;
        }
        span?.SetTag("notice.run", runId);
        span?.SetTag("notice.shards", shards.Count);
        span?.SetTag("notice.enqueued", enqueued);
        return (message, enqueued);
    }

    private async Task EnsureGroupAsync(string stream, string group)
    {
        try { await db.StreamCreateConsumerGroupAsync(stream, group, "0-0", createStream: true); }
        catch (RedisServerException e) when (e.Message.Contains("BUSYGROUP")) { }
    }

    /// <summary>The sample with its image bytes (empty where a file is missing: the worker reports that sample).</summary>
    private static SampleMessage ToMessage(string manifest, PairRecord record)
    {
        var r = PairsManifest.Resolve(manifest, record);
        static byte[] Bytes(string path) => File.Exists(path) ? File.ReadAllBytes(path) : [];
        return new SampleMessage
        {
            Id = r.Id, Task = r.Task, Category = r.Category, Prompt = r.Prompt, CorruptPrompt = r.CorruptPrompt,
            Answer = r.Answer, WrongAnswer = r.WrongAnswer,
            ImageName = r.Image, Image = Bytes(r.Image), CorruptImageName = r.CorruptImage, CorruptImage = Bytes(r.CorruptImage),
        };
    }

    public static async Task<RunSpecMessage?> LoadSpecAsync(IDatabase db, string runId)
    {
        var v = await db.StringGetAsync(new RedisKeys(runId).Spec);
        return v.HasValue ? MessagePackSerializer.Deserialize<RunSpecMessage>((byte[])v!) : null;
    }
}
