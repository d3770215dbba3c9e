using Notice.Aggregator;
using Notice.Distributed;

// The aggregator: keeps the run's tables current from the results stream, writes the results folder
// and report when every shard is done or dead, and serves the live dashboard.
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddRedisClient("redis");
builder.Services.AddNoticeOptions();
builder.Services.AddSingleton<AggregatorService>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<AggregatorService>());

var app = builder.Build();
app.MapDefaultEndpoints();
app.MapDashboard();
app.Run();
