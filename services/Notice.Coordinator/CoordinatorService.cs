using System.Diagnostics;
using Notice.Core;
using Notice.Core.Experiments;
using Notice.Core.Tasks;
using Notice.Distributed;
using StackExchange.Redis;

namespace Notice.Coordinator;

/// <summary>Plans the run the AppHost handed it (one encoded experiment), then keeps the run's root span
/// open until the aggregator marks the run complete. A run it cannot plan ends it with one line on
/// stderr and exit code 2, which the AppHost reports.</summary>
public sealed class CoordinatorService(IConnectionMultiplexer redis, NoticeServiceOptions options, IHostApplicationLifetime lifetime, ILogger<CoordinatorService> log)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stop)
    {
        // One trace per run: this span is the root every shard span hangs from.
        using var run = NoticeTelemetry.Source.StartActivity($"run {options.Run}", ActivityKind.Internal);
        run?.SetTag("notice.run", options.Run);
        try
        {
            var experiment = options.DecodeExperiment();
            if (experiment.PairsPath.Length == 0) experiment = experiment with { PairsPath = GenerateShapes(experiment) };
            var (spec, enqueued) = await new RunPlanner(redis.GetDatabase()).PlanAsync(experiment, options.Run, options.Out, stop);
            log.LogInformation("run {Run}: {Samples} samples, {Shards} shards ({Enqueued} new), {Units} units", options.Run, spec.SampleIds.Length, spec.TotalShards, enqueued, spec.TotalUnits);
            var keys = new RedisKeys(options.Run);
            var db = redis.GetDatabase();
            while (!stop.IsCancellationRequested && await db.HashGetAsync(keys.Status, "complete") != "1")
                await Task.Delay(1000, stop);
            log.LogInformation("run {Run} complete", options.Run);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        catch (Exception e) when (InputErrors.IsInputError(e))
        {
            run?.SetStatus(ActivityStatusCode.Error, e.Message);
            log.LogError("planning run {Run} failed: {Error}", options.Run, e.Message);
            Console.Error.WriteLine($"error: {e.Message}");
            Environment.ExitCode = 2;
            lifetime.StopApplication();
        }
        catch (Exception e)
        {
            run?.SetStatus(ActivityStatusCode.Error, e.Message);
            log.LogError(e, "planning run {Run} failed", options.Run);
            Console.Error.WriteLine($"error: planning run {options.Run} failed: {e.Message}");
            Environment.ExitCode = 1;
            lifetime.StopApplication();
        }
    }

    /// <summary>The built-in default (no --pairs with the built-in shapes BLIP, as <see cref="ExperimentParser"/>
    /// allows only then): shapes pairs generated for its tokenizer, a third per task.</summary>
    private string GenerateShapes(ExperimentSpec experiment)
    {
        var tokens = Notice.Core.Families.ModelFamilies.Of(experiment.ModelDir).WordTokenCounter(experiment.ModelDir);
        var report = ShapesTaskGenerator.GenerateForRun(Path.Combine(options.Out, "pairs"), experiment.Samples ?? ExperimentParser.GeneratedSamples,
            (int)experiment.Patching.NoiseSeed, tokens);
        log.LogInformation("generated the shapes tasks: {Report}", report.ToString());
        return report.ManifestPath!;
    }
}
