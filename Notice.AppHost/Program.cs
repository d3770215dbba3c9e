using Microsoft.Extensions.Configuration;
using Notice.AppHost;
using Notice.Distributed;

// The topology of a Notice run: redis-server, the coordinator that plans the run onto Redis streams,
// one worker per device, and the aggregator that writes the results and serves the live dashboard.
AppHostOptions options;
string[] aspireArgs;
try
{
    options = AppHostOptions.Parse(args, Environment.GetEnvironmentVariable("NOTICE_CALLER_DIR") ?? Environment.CurrentDirectory, out aspireArgs);
}
catch (Exception e) when (Notice.Core.InputErrors.IsInputError(e))
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
var builder = DistributedApplication.CreateBuilder(aspireArgs);

IResourceBuilder<IResourceWithConnectionString> redis;
IResourceBuilder<IResource> redisServer;
if (!string.IsNullOrWhiteSpace(builder.Configuration.GetConnectionString("redis")))
{
    // An existing server (workers on many machines point at it too).
    redis = builder.AddConnectionString("redis");
    redisServer = redis;
}
else if (options.Redis == "container")
{
    // Needs Docker or Podman; not available on the machines this project is developed on.
    var container = builder.AddRedis("redis");
    (redis, redisServer) = (container, container);
}
else
{
    (redis, redisServer) = RedisServerResource.Add(builder, options.KeepRedisData);
}

// The experiment goes to the coordinator once, whole; workers and the aggregator read it from Redis.
var coordinator = builder.AddProject<Projects.Notice_Coordinator>("coordinator")
    .WithReference(redis).WaitFor(redisServer)
    .WithEnvironment("Notice__Run", options.Run)
    .WithEnvironment("Notice__Out", options.Out)
    .WithEnvironment("Notice__Experiment", NoticeServiceOptions.Encode(options.Experiment));

var workers = new List<IResourceBuilder<ProjectResource>>();
for (int i = 0; i < options.Devices.Count; i++)
{
    var device = options.Devices[i];
    var worker = builder.AddProject<Projects.Notice_Worker>("worker-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture))
        .WithReference(redis).WaitFor(redisServer)
        .WithEnvironment("Notice__Run", options.Run)
        .WithEnvironment("Notice__WorkerId", "worker-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture));
    // Each GPU worker sees only its own GPU, as cuda:0.
    if (device.StartsWith("cuda", StringComparison.Ordinal))
        worker.WithEnvironment("CUDA_VISIBLE_DEVICES", device.Contains(':') ? device[(device.IndexOf(':') + 1)..] : "0").WithEnvironment("Notice__Device", "cuda:0");
    else
        worker.WithEnvironment("Notice__Device", "cpu");
    workers.Add(worker);
}

var aggregator = builder.AddProject<Projects.Notice_Aggregator>("aggregator", launchProfileName: null)
    .WithHttpEndpoint(name: "http")
    .WithReference(redis).WaitFor(redisServer)
    .WithEnvironment("Notice__Run", options.Run)
    .WithEnvironment("Notice__Out", options.Out);

var app = builder.Build();
return await RunWatcher.RunAsync(app, aggregator, coordinator, workers, options);
