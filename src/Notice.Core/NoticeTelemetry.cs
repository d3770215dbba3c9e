using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Notice.Core;

/// <summary>Notice's own spans and metrics ("Notice"): plain System.Diagnostics, so Core needs no
/// telemetry package; the services export them through OpenTelemetry.</summary>
public static class NoticeTelemetry
{
    public const string Name = "Notice";
    public static readonly ActivitySource Source = new(Name);
    public static readonly Meter Meter = new(Name);
}
