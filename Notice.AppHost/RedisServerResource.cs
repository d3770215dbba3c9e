using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Notice.AppHost;

/// <summary>
/// Debian's redis-server as an Aspire executable resource (no container runtime needed): loopback
/// only, on a port Aspire allocates, with a generated password, the append-only file on and a
/// temporary data directory. The password is in a config file only the owner can read (never on
/// redis-server's command line); the data directory, samples included, is removed when the AppHost
/// stops unless asked to keep it. Its connection string is built from the endpoint and the password.
/// </summary>
public static class RedisServerResource
{
    public static (IResourceBuilder<IResourceWithConnectionString> ConnectionString, IResourceBuilder<IResource> Server) Add(
        IDistributedApplicationBuilder builder, bool keepData = false)
    {
        var password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        var dataDir = Directory.CreateTempSubdirectory("notice-apphost-redis-").FullName;
        File.SetUnixFileMode(dataDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var config = Path.Combine(dataDir, "redis.conf");
        using (File.Create(config)) { }
        File.SetUnixFileMode(config, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(config, $"requirepass {password}\n");
        var server = builder.AddExecutable("redis-server", "redis-server", dataDir)
            .WithEndpoint(name: "tcp", scheme: "tcp", isProxied: false);
        var endpoint = server.GetEndpoint("tcp");
        server.WithArgs(ctx =>
        {
            ctx.Args.Add(config);
            ctx.Args.Add("--port"); ctx.Args.Add(endpoint.Property(EndpointProperty.TargetPort));
            ctx.Args.Add("--bind"); ctx.Args.Add("127.0.0.1");
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
        if (!keepData) builder.Services.AddHostedService(_ => new DataDirectoryCleanup(dataDir));
        var connection = builder.AddConnectionString("redis", ReferenceExpression.Create(
            $"{endpoint.Property(EndpointProperty.Host)}:{endpoint.Property(EndpointProperty.TargetPort)},password={password},abortConnect=false"));
        return (connection, server);
    }

    /// <summary>Removes redis-server's data directory once the application has stopped.</summary>
    private sealed class DataDirectoryCleanup(string dataDir) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken)
        {
            AppDomain.CurrentDomain.ProcessExit += (_, _) => Delete();
            return Task.CompletedTask;
        }

        private void Delete()
        {
            try { if (Directory.Exists(dataDir)) Directory.Delete(dataDir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
