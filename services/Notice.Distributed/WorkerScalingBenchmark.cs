using Notice.Core.Families.Blip;
using System.Diagnostics;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;

namespace Notice.Distributed;

public sealed record ScalingPoint(int Workers, long Units, double Seconds)
{
    public double UnitsPerSecond => Units / Seconds;
}

/// <summary>
/// Throughput of the distributed run with 1, 2, ... worker processes on this machine, each with one
/// torch thread, against a redis-server of its own: the same run (the fixture's pairs repeated)
/// planned afresh for every worker count, timed from the moment every worker has loaded the model
/// and announced itself to the aggregator's completion. The model is the fixture's tokenizer on a
/// randomly initialised BLIP of moderate size, so the work per unit resembles a real run more than the
/// tiny fixture's does.
/// </summary>
public static class WorkerScalingBenchmark
{
    public static async Task<IReadOnlyList<ScalingPoint>> RunAsync(string repoRoot, string modelDir, string pairs, int repeat, IReadOnlyList<int> workerCounts, Action<string>? log = null)
    {
        var dir = Directory.CreateTempSubdirectory("notice-scaling-").FullName;
        try
        {
            var manifest = Repeat(pairs, repeat, dir);
            var model = RandomModel(modelDir, Path.Combine(dir, "model"));
            var spec = new ExperimentSpec
            {
                ModelDir = model, PairsPath = manifest,
                Modes = [CorruptionMode.Image, CorruptionMode.Text],
                Sites = [BlipSites.Mlp, BlipSites.Attn, BlipSites.Cross, BlipSites.AttnHeads, BlipSites.CrossHeads],
            };
            var worker = ServiceProcess.ProgramPath(repoRoot, "Notice.Worker");
            var points = new List<ScalingPoint>();
            foreach (int n in workerCounts)
            {
                using var redis = new LocalRedisServer();
                using var connection = redis.Connect();
                var run = $"scaling-{n}";
                var (plan, _) = await new RunPlanner(connection.GetDatabase()).PlanAsync(spec, run, Path.Combine(dir, run));
                log?.Invoke($"{n} worker(s): {plan.TotalUnits} units in {plan.TotalShards} shards");
                var workers = Enumerable.Range(0, n).Select(i => new ServiceProcess(worker, new Dictionary<string, string>
                {
                    ["ConnectionStrings__redis"] = redis.ConnectionString, ["Notice__Run"] = run,
                    ["Notice__WorkerId"] = $"w{i}", ["Notice__Threads"] = "1",
                })).ToList();
                try
                {
                    var keys = new RedisKeys(run);
                    var db = connection.GetDatabase();
                    while (await db.HashLengthAsync(keys.Workers) < n)
                    {
                        if (workers.Any(w => w.HasExited)) throw new InvalidOperationException("a worker exited: " + workers.First(w => w.HasExited).Output);
                        await Task.Delay(10);
                    }
                    var clock = Stopwatch.StartNew();
                    var aggregator = new RunAggregator(connection, run, Path.Combine(dir, run));
                    using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(20));
                    await aggregator.RunAsync(timeout.Token);
                    clock.Stop();
                    if (!aggregator.Complete) throw new TimeoutException($"the run with {n} workers did not complete");
                    points.Add(new ScalingPoint(n, aggregator.Status().UnitsDone, clock.Elapsed.TotalSeconds));
                }
                finally
                {
                    foreach (var w in workers) w.Dispose();
                }
            }
            return points;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A BLIP with random weights (hidden 256, 4 layers, 8 heads, 96x96 images) that reads the
    /// fixture's vocabulary: its tokenizer files are copied beside it.</summary>
    private static string RandomModel(string tokenizerDir, string folder)
    {
        var vocab = Notice.Vlm.Text.BlipTokenizer.Load(tokenizerDir);
        var config = new Notice.Vlm.Blip.BlipConfig
        {
            Vision = new Notice.Vlm.Blip.BlipVisionConfig { HiddenSize = 256, IntermediateSize = 1024, NumHiddenLayers = 4, NumAttentionHeads = 8, ImageSize = 96, PatchSize = 16 },
            Text = new Notice.Vlm.Blip.BlipTextConfig
            {
                VocabSize = vocab.VocabSize, HiddenSize = 256, EncoderHiddenSize = 256, IntermediateSize = 1024, NumHiddenLayers = 4, NumAttentionHeads = 8,
                BosTokenId = vocab.DecId, SepTokenId = vocab.SepId, PadTokenId = vocab.PadId,
            },
        };
        TorchSharp.torch.manual_seed(0);
        using (var model = new Notice.Vlm.Blip.BlipForQuestionAnswering(config)) model.Save(folder);
        foreach (var f in new[] { "vocab.txt", "tokenizer_config.json", "special_tokens_map.json" })
            File.Copy(Path.Combine(tokenizerDir, f), Path.Combine(folder, f));
        var preprocessor = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(tokenizerDir, "preprocessor_config.json")))!;
        preprocessor["size"] = new System.Text.Json.Nodes.JsonObject { ["height"] = 96, ["width"] = 96 };
        File.WriteAllText(Path.Combine(folder, "preprocessor_config.json"), preprocessor.ToJsonString());
        return folder;
    }

    /// <summary>The manifest's records <paramref name="repeat"/> times over (new ids, absolute image paths).</summary>
    private static string Repeat(string pairs, int repeat, string dir)
    {
        var records = PairsManifest.Read(pairs).Select(r => PairsManifest.Resolve(pairs, r)).ToList();
        var path = Path.Combine(dir, "pairs.jsonl");
        PairsManifest.Write(path, Enumerable.Range(0, repeat).SelectMany(i => records.Select(r => r with { Id = $"{r.Id}-{i}" })));
        return path;
    }
}
