using Notice.Core.Analysis;
using Notice.Distributed;
using StackExchange.Redis;

namespace Notice.Aggregator;

public sealed class AggregatorService(IConnectionMultiplexer redis, NoticeServiceOptions options, IHostApplicationLifetime lifetime, ILogger<AggregatorService> log) : BackgroundService
{
    public RunAggregator Aggregator { get; } = new(redis, options.Run, string.IsNullOrWhiteSpace(options.Out) ? Path.Combine("runs", options.Run) : options.Out)
    {
        Log = m => log.LogInformation("{Message}", m),
        OnComplete = async dir =>
        {
            // Tables, figures and the HTML report, from the results files alone.
            var files = await ReportWriter.WriteAsync(dir, dir);
            log.LogInformation("report: {Report}", files.Report);
        },
    };

    public IConnectionMultiplexer Redis => redis;

    public RunGauges Gauges { get; } = new(redis, options.Run);

    protected override async Task ExecuteAsync(CancellationToken stop)
    {
        log.LogInformation("aggregating run {Run} into {Out}", options.Run, Aggregator.OutDir);
        var gauges = Gauges.RunAsync(TimeSpan.FromSeconds(2), stop);
        try { await Aggregator.RunAsync(stop); }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        catch (Exception e) when (Notice.Core.InputErrors.IsInputError(e))
        {
            // A run it cannot read (a malformed spec in Redis): one line, as the workers say theirs, and a non-zero exit.
            Console.Error.WriteLine($"error: aggregator: run {options.Run}: {e.Message}");
            Environment.ExitCode = 1;
            lifetime.StopApplication();
            return;
        }
        // The gauges keep reporting (queue empty, workers gone) while the dashboard stays up.
        await gauges;
    }
}
