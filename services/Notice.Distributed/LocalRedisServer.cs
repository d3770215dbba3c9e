using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;

namespace Notice.Distributed;

/// <summary>A redis-server of our own (tests, benchmarks): a free loopback port, a temporary data
/// directory, append-only file on; stopped and removed on dispose. Never assumes one is running.</summary>
public sealed class LocalRedisServer : IDisposable
{
    private readonly Process _process;
    private readonly string _dir;

    public int Port { get; }
    public string ConnectionString => $"127.0.0.1:{Port},abortConnect=false";

    public LocalRedisServer()
    {
        _dir = Directory.CreateTempSubdirectory("notice-redis-").FullName;
        Port = FreePort();
        var psi = new ProcessStartInfo("redis-server")
        {
            ArgumentList = { "--port", Port.ToString(), "--bind", "127.0.0.1", "--dir", _dir, "--appendonly", "yes", "--save", "", "--daemonize", "no" },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        _process = Process.Start(psi) ?? throw new InvalidOperationException("redis-server did not start");
        _process.OutputDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            try
            {
                using var c = new TcpClient();
                c.Connect(IPAddress.Loopback, Port);
                break;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline) { Thread.Sleep(50); }
        }
    }

    public ConnectionMultiplexer Connect() => ConnectionMultiplexer.Connect(ConnectionString);

    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public void Dispose()
    {
        try { if (!_process.HasExited) { _process.Kill(); _process.WaitForExit(5000); } } catch (InvalidOperationException) { }
        _process.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
