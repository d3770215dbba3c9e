using System.Runtime.InteropServices;

namespace Notice.Vlm.Checkpoints;

/// <summary>What a path names, after following symbolic links.</summary>
public enum InputFileKind { Missing, Regular, Directory, CharacterDevice, BlockDevice, Fifo, Socket, Other }

/// <summary>
/// The type and length of an input file, read from its metadata WITHOUT opening it, and following
/// symbolic links (a Hugging Face cache snapshot is a folder of links into ../../blobs). Opening a FIFO
/// blocks until a writer comes, and /dev/zero never ends, so a loader asks here first and refuses
/// anything that is not a regular file of a sane length.
/// </summary>
public static class InputFiles
{
    /// <summary>The largest side file of a model folder read (tokenizer files, preprocessor_config.json):
    /// 64 MiB. The largest real ones (tokenizer.json of 250k-token vocabularies) are about 20 MiB.</summary>
    public const long MaxSideFileBytes = 64L << 20;

    /// <summary>The kind and length (of the link's target, for a link) of <paramref name="path"/>.</summary>
    public static (InputFileKind Kind, long Length) Stat(string path)
    {
        if (OperatingSystem.IsLinux() && TryStatx(path, out var kind, out var length)) return (kind, length);
        // Elsewhere: .NET reports directories and (through links) files, not devices or FIFOs; those
        // report length 0, which every caller refuses as an empty file before opening it.
        if (Directory.Exists(path)) return (InputFileKind.Directory, 0);
        if (!File.Exists(path)) return (InputFileKind.Missing, 0);
        var info = new FileInfo(path);
        var target = info.LinkTarget is null ? info : info.ResolveLinkTarget(returnFinalTarget: true) as FileInfo ?? info;
        return (InputFileKind.Regular, target.Length);
    }

    /// <summary>
    /// The length of the regular file at <paramref name="path"/> (its final target, for a link), or an
    /// error made by <paramref name="error"/> from a one-line problem: missing, a directory, a device,
    /// a FIFO, or longer than <paramref name="maxBytes"/>.
    /// </summary>
    public static long RegularFileLength(string path, long maxBytes, Func<string, Exception> error)
    {
        var (kind, length) = Stat(path);
        string? problem = kind switch
        {
            InputFileKind.Regular => null,
            InputFileKind.Missing => "file not found",
            InputFileKind.Directory => "is a directory, not a file",
            InputFileKind.CharacterDevice => "is a character device, not a regular file",
            InputFileKind.BlockDevice => "is a block device, not a regular file",
            InputFileKind.Fifo => "is a FIFO (named pipe), not a regular file",
            InputFileKind.Socket => "is a socket, not a regular file",
            _ => "is not a regular file",
        };
        if (problem is not null) throw error(problem);
        if (length > maxBytes) throw error($"is {Bytes(length)}, more than the {Bytes(maxBytes)} allowed for this kind of file");
        return length;
    }

    /// <summary>Reads a whole regular file of at most <paramref name="maxBytes"/> (checked before it is opened).</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, Func<string, Exception> error)
    {
        RegularFileLength(path, maxBytes, error);
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            // The length is re-read from the open handle: the file may have changed since it was checked.
            long now = fs.Length;
            if (now > maxBytes) throw error($"is {Bytes(now)}, more than the {Bytes(maxBytes)} allowed for this kind of file");
            var bytes = new byte[now];
            fs.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw error($"cannot read the file: {e.Message}");
        }
    }

    /// <summary>1.5 GiB, 256 MiB, 17 bytes.</summary>
    public static string Bytes(long n) => n switch
    {
        >= 1L << 30 => $"{n / (double)(1L << 30):0.#} GiB",
        >= 1L << 20 => $"{n / (double)(1L << 20):0.#} MiB",
        >= 1L << 10 => $"{n / 1024.0:0.#} KiB",
        _ => $"{n} bytes",
    };

    // statx(2) reads the type and size without opening the file, and its struct has one layout on
    // every Linux architecture (unlike struct stat). It follows links unless told otherwise.
    [UnmanagedFunctionPointer(CallingConvention.Cdecl, SetLastError = true)]
    private delegate int StatxFn(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);

    private static readonly Lazy<StatxFn?> Statx = new(() =>
    {
        foreach (var lib in new[] { "libc.so.6", "libc" })
            if (NativeLibrary.TryLoad(lib, out var handle) && NativeLibrary.TryGetExport(handle, "statx", out var fn))
                return Marshal.GetDelegateForFunctionPointer<StatxFn>(fn);
        return null;
    });

    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1, StatxSize = 0x200;
    private const int ENOENT = 2, ENOTDIR = 20;

    private static bool TryStatx(string path, out InputFileKind kind, out long length)
    {
        kind = InputFileKind.Missing; length = 0;
        var fn = Statx.Value;
        if (fn is null || path.Contains('\0')) return false;
        var buffer = new byte[256];
        int rc;
        try { rc = fn(AtFdCwd, path, 0, StatxType | StatxSize, buffer); }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException or MarshalDirectiveException) { return false; }
        if (rc != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is ENOENT or ENOTDIR) return true;   // Missing (a dangling link included)
            return false;                                  // EACCES etc.: let .NET report it
        }
        // struct statx: stx_mode (u16) at offset 28, stx_size (u64) at offset 40.
        int mode = BitConverter.ToUInt16(buffer, 28) & 0xF000;
        length = (long)Math.Min(BitConverter.ToUInt64(buffer, 40), long.MaxValue);
        kind = mode switch
        {
            0x8000 => InputFileKind.Regular,
            0x4000 => InputFileKind.Directory,
            0x2000 => InputFileKind.CharacterDevice,
            0x6000 => InputFileKind.BlockDevice,
            0x1000 => InputFileKind.Fifo,
            0xC000 => InputFileKind.Socket,
            _ => InputFileKind.Other,
        };
        return true;
    }
}
