using System.Reflection;
using TorchSharp;

namespace Notice.Vlm;

/// <summary>A device Notice cannot use: one line naming the device and the reason.</summary>
public sealed class DeviceException(string message) : ArgumentException(message);

/// <summary>
/// Which torch devices this build can use. The TorchSharp package is chosen at build time
/// (<c>-p:NoticeTorch=cpu|cuda</c>, Directory.Build.props) and recorded in this assembly, so a CPU
/// build asked for a GPU says so instead of failing deep inside libtorch.
/// </summary>
public static class TorchDevices
{
    /// <summary>"cpu" or "cuda": the TorchSharp package this build links.</summary>
    public static string Build { get; } = typeof(TorchDevices).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .FirstOrDefault(a => a.Key == "NoticeTorch")?.Value ?? "cpu";

    /// <summary>Why <paramref name="device"/> cannot be used here, or null when it can.</summary>
    public static string? WhyNotUsable(string device)
    {
        var name = device.Trim().ToLowerInvariant();
        if (name == "cpu") return null;
        if (name != "cuda" && !name.StartsWith("cuda:", StringComparison.Ordinal))
            return "Notice runs on cpu, cuda or cuda:N";
        int index = 0;
        if (name.Length > 5 && (!int.TryParse(name.AsSpan(5), out index) || index < 0))
            return "not a device name (cpu, cuda, cuda:N)";
        if (Build != "cuda")
            return "this build of Notice uses TorchSharp-cpu (build with -p:NoticeTorch=cuda on a machine with CUDA)";
        var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        if (!torch.cuda.is_available()) return "no CUDA device is visible" + (visible is null ? "" : $" (CUDA_VISIBLE_DEVICES={visible})");
        int count = torch.cuda.device_count();
        if (index >= count) return $"only {count} CUDA device{(count == 1 ? " is" : "s are")} visible (cuda:0{(count > 1 ? $" to cuda:{count - 1}" : "")})";
        return null;
    }

    /// <summary>The device, or a <see cref="DeviceException"/>: "device cuda:0 is not usable: reason".</summary>
    public static torch.Device Require(string device)
    {
        if (WhyNotUsable(device) is { } why) throw new DeviceException($"device {device} is not usable: {why}");
        return torch.device(device.Trim().ToLowerInvariant());
    }
}
