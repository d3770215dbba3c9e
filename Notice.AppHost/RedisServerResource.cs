using Microsoft.Extensions.DependencyInjection;
using System.Net.Sockets;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Notice.AppHost;

/// <summary>
/// Debian's redis-server as an Aspire executable resource (no container runtime needed): loopback
/// only, on a port Aspire allocates, with a generated password, the append-only file on and a
/// temporary data directory. Its connection string is built from the endpoint and the password.
/// </summary>
public static class RedisServerResource
{
    public static (IResourceBuilder<IResourceWithConnectionString> ConnectionString, IResourceBuilder<IResource> Server) Add(IDistributedApplicationBuilder builder)
    {
        var password = ParameterResourceBuilderExtensions.CreateDefaultPasswordParameter(builder, "redis-password", special: false);
        var dataDir = Directory.CreateTempSubdirectory("notice-redis-").FullName;
        var server = builder.AddExecutable("redis-server", "redis-server", dataDir)
            .WithEndpoint(name: "tcp", scheme: "tcp", isProxied: false);
        var endpoint = server.GetEndpoint("tcp");
        server.WithArgs(ctx =>
        {
            ctx.Args.Add("--port"); ctx.Args.Add(endpoint.Property(EndpointProperty.TargetPort));
            ctx.Args.Add("--bind"); ctx.Args.Add("127.0.0.1");
            ctx.Args.Add("--requirepass"); ctx.Args.Add(password);
            ctx.Args.Add("--appendonly"); ctx.Args.Add("yes");
            ctx.Args.Add("--dir"); ctx.Args.Add(dataDir);
            ctx.Args.Add("--save"); ctx.Args.Add("");
            ctx.Args.Add("--protected-mode"); ctx.Args.Add("yes");
        });
        // Healthy once it accepts connections, so services that wait for it find it listening.
        builder.Services.AddHealthChecks().AddAsyncCheck("redis-listening", async ct =>
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", int.Parse(await endpoint.Property(EndpointProperty.TargetPort).GetValueAsync(ct) ?? "0"), ct);
                return HealthCheckResult.Healthy();
            }
            catch (Exception e) when (e is SocketException or FormatException or InvalidOperationException)
            {
                return HealthCheckResult.Unhealthy(e.Message);
            }
        });
        server.WithHealthCheck("redis-listening");
        var connection = builder.AddConnectionString("redis", ReferenceExpression.Create(
            $"{endpoint.Property(EndpointProperty.Host)}:{endpoint.Property(EndpointProperty.TargetPort)},password={password},abortConnect=false"));
        return (connection, server);
    }
}
