using System.Diagnostics;
using Notice.Core;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm.Processing;
using StackExchange.Redis;

namespace Notice.Distributed;

/// <summary>
/// The coordinator's work: stores a run (its spec and its samples, image bytes included) in Redis
/// and adds its shards to the run's work stream. Planning is idempotent: a shard id is added to the
/// planned set and its message to the stream in one Lua script, so planning the same run twice
/// (a restarted coordinator) enqueues nothing twice. Under atp+exact the workers add the confirmation
/// shards, so the planned set grows during the run: <see cref="RunSpecMessage.TotalShards"/> counts the
/// shards planned here.
/// </summary>
public sealed class RunPlanner(IDatabase db)
{
    /// <summary>Stores the run and enqueues its shards.</summary>
    /// <param name="spec">the experiment, parsed once by whoever started the run (its pairs generated already)</param>
    /// <param name="outDir">where the aggregator writes the results folder</param>
    /// <returns>the stored spec and how many shards this call enqueued</returns>
    public async Task<(RunSpecMessage Spec, int Enqueued)> PlanAsync(ExperimentSpec spec, string runId, string outDir = "", CancellationToken cancel = default)
    {
        ExperimentParser.Validate(spec);
        var keys = new RedisKeys(runId);
        // Shards are children of the caller's run span, not of the planning span below.
        var runTrace = Activity.Current?.Id ?? "";
        using var span = NoticeTelemetry.Source.StartActivity("plan run", ActivityKind.Producer);
        var records = PairsManifest.Read(spec.PairsPath, checkImages: false).ToList();
        if (spec.Samples is { } n) records = records.Take(n).ToList();
        // Tokenizer and config only: the coordinator never loads the weights (a 7B model stays on the workers).
        var estimate = new UnitEstimator(spec);

        // One trace per run: a re-planning coordinator keeps the trace it started first.
        var existing = await LoadSpecAsync(db, runId);
        string traceParent = existing?.TraceParent ?? runTrace;

        await db.EnsureGroupAsync(keys.Work, RedisKeys.WorkersGroup);
        await db.EnsureGroupAsync(keys.Results, RedisKeys.AggregatorGroup);

        var shards = new List<ShardMessage>();
        foreach (var r in records)
        {
            cancel.ThrowIfCancellationRequested();
            await db.HashSetAsync(keys.Samples, r.Id, Wire.Write(ToMessage(spec.PairsPath, r)));
            foreach (var mode in spec.Modes)
            {
                if (spec.Method.Estimates())
                {
                    // Attribution patching: one shard per (sample, mode); atp+exact's confirmation shards follow from it.
                    shards.Add(new ShardMessage
                    {
                        RunId = runId, ShardId = ShardKey.Atp(r.Id, mode.Name()).ToString(), SampleId = r.Id, Mode = mode, Method = PatchMethod.Atp,
                        TraceParent = traceParent, EstimatedUnits = (int)spec.Sites.Sum(site => estimate.Rows(r, site)),
                    });
                    continue;
                }
                foreach (var site in spec.Sites)
                {
                    // Head sites split by layer: shards of comparable size spread over more workers.
                    var layers = site.PerHead ? estimate.Layers.Select(l => (int?)l) : [null];
                    foreach (var layer in layers)
                        shards.Add(new ShardMessage
                        {
                            RunId = runId, ShardId = new ShardKey(r.Id, mode.Name(), site.Name, layer).ToString(),
                            SampleId = r.Id, Mode = mode, Site = site, Layer = layer ?? -1, TraceParent = traceParent,
                            EstimatedUnits = (int)(estimate.Rows(r, site) / (layer is null ? 1 : estimate.Layers.Count)),
                        });
                }
            }
        }
        var message = new RunSpecMessage
        {
            RunId = runId, Experiment = spec, OutDir = outDir, TraceParent = traceParent,
            TotalUnits = shards.Sum(s => (long)s.EstimatedUnits), TotalShards = shards.Count,
            SampleIds = records.Select(r => r.Id).ToArray(), PairsSha256 = Provenance.Sha256(spec.PairsPath),
        };
        // The spec goes in before the shards, so whoever reads a shard finds its run.
        await db.StringSetAsync(keys.Spec, Wire.Write(message));
        await db.SetAddAsync(RedisKeys.Runs, runId);
        int enqueued = 0;
        foreach (var shard in shards)
        {
            if (await db.AppendOnceAsync(keys.Planned, keys.Work, shard.ShardId, Wire.Write(shard))) enqueued++;
        }
        span?.SetTag("notice.run", runId);
        span?.SetTag("notice.shards", shards.Count);
        span?.SetTag("notice.enqueued", enqueued);
        return (message, enqueued);
    }

    /// <summary>The sample with its image bytes (empty where a file is missing or is no image: the worker reports that sample).</summary>
    private static SampleMessage ToMessage(string manifest, PairRecord record)
    {
        var r = PairsManifest.Resolve(manifest, record);
        return new SampleMessage
        {
            Id = r.Id, Task = r.Task, Category = r.Category, Prompt = r.Prompt, CorruptPrompt = r.CorruptPrompt,
            Answer = r.Answer, WrongAnswer = r.WrongAnswer,
            ImageName = r.Image, Image = ImageBytes(r.Image), CorruptImageName = r.CorruptImage, CorruptImage = ImageBytes(r.CorruptImage),
        };
    }

    /// <summary>A file's bytes if it is a readable image within the decoder's limits, else none (so
    /// nothing but images goes into Redis, its append-only file and remote workers).</summary>
    private static byte[] ImageBytes(string path)
    {
        try
        {
            if (!File.Exists(path)) return [];
            ImageDecoder.Load(path);   // refuses what is not a regular file, too large, or no image
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is ImageException or IOException or UnauthorizedAccessException or InvalidDataException or ArgumentException) { return []; }
    }

    public static async Task<RunSpecMessage?> LoadSpecAsync(IDatabase db, string runId)
    {
        var v = await db.StringGetAsync(new RedisKeys(runId).Spec);
        return v.HasValue ? Wire.Read<RunSpecMessage>((byte[])v!) : null;
    }
}
