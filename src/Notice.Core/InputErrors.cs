using Notice.Core.Tasks;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Config;
using Notice.Vlm.Processing;

namespace Notice.Core;

/// <summary>Which exceptions are bad input (a user's file or option, a malformed message) rather
/// than a fault: they end in one line naming what is wrong, never a stack trace, and a shard that
/// fails with one is not tried again.</summary>
public static class InputErrors
{
    public static bool IsInputError(Exception e) => e is CheckpointException or ConfigException or ImageException
        or ArgumentException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException
        or InvalidOperationException or FormatException or TaskInputException or UnauthorizedAccessException;
}
