using Notice.Coordinator;
using Notice.Distributed;

// The coordinator: stores the run and its samples in Redis and enqueues its shards, then keeps the
// run's root span open until the aggregator marks the run complete.
var builder = Host.CreateApplicationBuilder(args);
builder.AddServiceDefaults();
builder.AddRedisClient("redis");
builder.Services.AddNoticeOptions();
builder.Services.AddHostedService<CoordinatorService>();
builder.Build().Run();
