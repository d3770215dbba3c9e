using System.Diagnostics;
using Notice.Core;
using Notice.Core.Tasks;
using Notice.Distributed;
using StackExchange.Redis;

namespace Notice.Coordinator;

public sealed class CoordinatorService(IConnectionMultiplexer redis, IConfiguration configuration, IHostApplicationLifetime lifetime, ILogger<CoordinatorService> log)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stop)
    {
        var options = NoticeServiceOptions.From(configuration);
        // One trace per run: this span is the root every shard span hangs from.
        using var run = NoticeTelemetry.Source.StartActivity($"run {options.Run}", ActivityKind.Internal);
        run?.SetTag("notice.run", options.Run);
        try
        {
            if (string.IsNullOrWhiteSpace(options.Pairs)) options.Pairs = GenerateShapes(options);
            var (spec, enqueued) = await new RunPlanner(redis.GetDatabase()).PlanAsync(options.ToSpec(), options.Run, stop);
            log.LogInformation("run {Run}: {Samples} samples, {Shards} shards ({Enqueued} new), {Units} units", options.Run, spec.SampleIds.Length, spec.TotalShards, enqueued, spec.TotalUnits);
            var keys = new RedisKeys(options.Run);
            var db = redis.GetDatabase();
            while (!stop.IsCancellationRequested && await db.HashGetAsync(keys.Status, "complete") != "1")
                await Task.Delay(1000, stop);
            log.LogInformation("run {Run} complete", options.Run);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        catch (Exception e)
        {
            run?.SetStatus(ActivityStatusCode.Error, e.Message);
            log.LogError(e, "planning run {Run} failed", options.Run);
            Environment.ExitCode = 2;
            lifetime.StopApplication();
        }
    }

    /// <summary>The built-in default: shapes pairs generated for the model's tokenizer, a third per task.</summary>
    private string GenerateShapes(NoticeServiceOptions options)
    {
        var tokenizer = Notice.Vlm.Text.BlipTokenizer.Load(options.Model);
        var report = ShapesTaskGenerator.GenerateForRun(Path.Combine(options.Out, "pairs"), options.Samples ?? 12, (int)options.Seed,
            w => tokenizer.Tokenize(w).Length);
        log.LogInformation("generated the shapes tasks: {Report}", report.ToString());
        return report.ManifestPath!;
    }
}
