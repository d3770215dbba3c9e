using Notice.Distributed;
using StackExchange.Redis;

namespace Notice.Worker;

public sealed class WorkerService(IConnectionMultiplexer redis, NoticeServiceOptions options, IHostApplicationLifetime lifetime, ILogger<WorkerService> log)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stop)
    {
        var id = options.WorkerId ?? $"{Environment.MachineName}-{Environment.ProcessId}";
        if (options.Threads > 0) TorchSharp.torch.set_num_threads(options.Threads);
        log.LogInformation("worker {Worker} on {Device} for run {Run}", id, options.Device, options.Run);
        try
        {
            var loop = new WorkerLoop(redis, new WorkerOptions
            {
                RunId = options.Run,
                WorkerId = id,
                Device = options.Device,
                ModelPath = string.IsNullOrWhiteSpace(options.Model) ? null : options.Model,
                ClaimIdle = TimeSpan.FromSeconds(options.ClaimIdleSeconds),
                ExitWhenRunComplete = options.ExitWhenDone,
            })
            { Log = m => log.LogWarning("{Message}", m) };
            await loop.RunAsync(stop);
            log.LogInformation("worker {Worker}: run {Run} has no work left", id, options.Run);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        catch (Exception e) when (Notice.Core.InputErrors.IsInputError(e))
        {
            // Bad input (an unusable device, a run that cannot be read): the one line, no stack trace.
            Console.Error.WriteLine($"error: worker {id}: {e.Message}");
            Environment.ExitCode = 1;
        }
        catch (Exception e)
        {
            log.LogError(e, "worker {Worker} failed", id);
            Console.Error.WriteLine($"error: worker {id}: {e.Message}");
            Environment.ExitCode = 1;
        }
        lifetime.StopApplication();
    }
}
