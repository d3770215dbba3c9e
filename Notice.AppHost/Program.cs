using Microsoft.Extensions.Configuration;
using Notice.AppHost;

// The topology of a Notice run: redis-server, the coordinator that plans the run onto Redis streams,
// one worker per device, and the aggregator that writes the results and serves the live dashboard.
var options = AppHostOptions.Parse(args, out var aspireArgs);
var builder = DistributedApplication.CreateBuilder(aspireArgs);
var experiment = Experiment.Resolve(options);

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
    (redis, redisServer) = RedisServerResource.Add(builder);
}

builder.AddProject<Projects.Notice_Coordinator>("coordinator")
    .WithReference(redis).WaitFor(redisServer)
    .WithNotice(experiment);

var devices = options.DeviceList;
for (int i = 0; i < devices.Count; i++)
{
    var worker = builder.AddProject<Projects.Notice_Worker>($"worker-{i}")
        .WithReference(redis).WaitFor(redisServer)
        .WithNotice(experiment)
        .WithEnvironment("Notice__WorkerId", WorkerName(i));
    if (devices[i].StartsWith("cuda", StringComparison.Ordinal))
    {
        // Each GPU worker sees only its own GPU, as cuda:0.
        var gpu = devices[i].Contains(':') ? devices[i][(devices[i].IndexOf(':') + 1)..] : "0";
        worker.WithEnvironment("CUDA_VISIBLE_DEVICES", gpu).WithEnvironment("Notice__Device", "cuda:0");
    }
    else
    {
        worker.WithEnvironment("Notice__Device", "cpu");
    }
}

var aggregator = builder.AddProject<Projects.Notice_Aggregator>("aggregator", launchProfileName: null)
    .WithHttpEndpoint(name: "http")
    .WithReference(redis).WaitFor(redisServer)
    .WithNotice(experiment);

var app = builder.Build();
return await RunWatcher.RunAsync(app, aggregator, experiment, options.ExitWhenDone);

static string WorkerName(int i) => "worker-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
