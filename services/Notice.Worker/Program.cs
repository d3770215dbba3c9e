using Notice.Distributed;
using Notice.Worker;

// A worker: pulls shards of the run from Redis and runs them with the patching engine. Run one per
// GPU (CUDA_VISIBLE_DEVICES) or several on CPU, on any machine that reaches the same Redis.
var builder = Host.CreateApplicationBuilder(args);
builder.AddServiceDefaults();
builder.AddRedisClient("redis");
builder.Services.AddNoticeOptions();
builder.Services.AddHostedService<WorkerService>();
builder.Build().Run();
