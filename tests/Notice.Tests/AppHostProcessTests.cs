using System.Diagnostics;
using Notice.Core.Results;

namespace Notice.Tests;

/// <summary>
/// The AppHost as a user starts it: scripts/run.sh from another directory, with relative paths, on
/// each family. A LLaVA run with the family's default sites (and with LLaVA's own site names)
/// completes; a coordinator that cannot plan ends the run at once with its error; a bad option is one
/// line and exit code 2.
/// </summary>
[Collection(HeavyCpuCollection.Name)]
public sealed class AppHostProcessTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-apphost-process-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>scripts/run.sh from <paramref name="cwd"/> (no build: the test project built everything).</summary>
    private static (int Code, string Output, TimeSpan Elapsed) RunScript(string cwd, TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo("bash") { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(Fixtures.Root, "scripts", "run.sh"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["NOTICE_NO_BUILD"] = "1";
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var output = new System.Text.StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine("stderr: " + e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            Assert.Fail($"scripts/run.sh {string.Join(' ', args)} did not end within {timeout}:\n{output}");
        }
        p.WaitForExit();
        lock (output) return (p.ExitCode, output.ToString(), clock.Elapsed);
    }

    /// <summary>A copy of a fixture in the test's folder, so paths can be relative to it.</summary>
    private void Copy(string fixture)
    {
        var to = Path.Combine(_dir, fixture);
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(Path.Combine(Fixtures.Root, "tests", "fixtures", fixture))) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }

    private void CopyLlava() => Copy("llava-tiny");

    [Fact]
    public void AQwenRunWithTheFamilysDefaultSitesCompletes()
    {
        Copy("qwen25vl-tiny");
        var (code, output, _) = RunScript(_dir, TimeSpan.FromMinutes(5), "--model", "qwen25vl-tiny", "--pairs", "qwen25vl-tiny/pairs.jsonl", "--out", "runs/qwen",
            "--devices", "cpu");
        Assert.True(code == 0, output);
        var outDir = Path.Combine(_dir, "runs", "qwen");
        Assert.True(File.Exists(Path.Combine(outDir, "report.html")), output);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        Assert.Equal(["layer", "attn", "mlp", "heads:attn"], rows.Select(r => r.Site).Distinct());
    }

    [Fact]
    public void ALlavaRunWithTheFamilysDefaultSitesAndRelativePathsCompletes()
    {
        CopyLlava();
        var (code, output, _) = RunScript(_dir, TimeSpan.FromMinutes(5), "--model", "llava-tiny", "--pairs", "llava-tiny/pairs.jsonl", "--out", "runs/default-sites");
        Assert.True(code == 0, output);
        var outDir = Path.Combine(_dir, "runs", "default-sites");
        Assert.True(File.Exists(Path.Combine(outDir, "report.html")), output);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        Assert.Equal(["layer", "attn", "mlp", "heads:attn"], rows.Select(r => r.Site).Distinct());
        Assert.Equal(["image", "text"], rows.Select(r => r.Mode).Distinct());
        // LLaVA's heads at the last position only (the family's default), as `notice patch` plans them.
        Assert.All(rows.Where(r => r.Site == "heads:attn").GroupBy(r => r.Sample), g => Assert.Single(g.Select(r => r.Position).Distinct()));
    }

    [Fact]
    public void ALlavaRunWithLlavasOwnSiteNamesAndAtpPlusExactCompletes()
    {
        CopyLlava();
        static string[] RedisDirs() => Directory.GetDirectories(Path.GetTempPath(), "notice-apphost-redis-*");
        var before = RedisDirs();
        var (code, output, _) = RunScript(_dir, TimeSpan.FromMinutes(5), "--model", "llava-tiny", "--pairs", "llava-tiny/pairs.jsonl", "--out", "runs/sites",
            "--sites", "layer,heads:attn", "--modes", "image", "--devices", "cpu", "--method", "atp+exact", "--confirm-top", "2");
        Assert.True(code == 0, output);
        // redis-server's data directory (sample images included) is gone with the AppHost.
        Assert.Empty(RedisDirs().Except(before));
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(_dir, "runs", "sites", ResultsTables.ResultsCsv));
        Assert.Equal(["layer", "heads:attn"], rows.Select(r => r.Site).Distinct());
        // Every unit estimated; each (sample, site) table's top 2 confirmed by the workers' confirmation shards.
        var tables = rows.Where(r => r.Method == "atp").GroupBy(r => (r.Sample, r.Site)).ToList();
        Assert.NotEmpty(tables);
        Assert.All(rows.Where(r => r.Method == "exact").GroupBy(r => (r.Sample, r.Site)), g => Assert.Equal(2, g.Count()));
        Assert.Equal(tables.Count * 2, rows.Count(r => r.Method == "exact"));
    }

    [Fact]
    public void ACoordinatorThatCannotPlanEndsTheRunWithItsError()
    {
        var pairs = Path.Combine(_dir, "broken.jsonl");
        File.WriteAllText(pairs, "{ this is not a pairs manifest\n");
        var (code, output, elapsed) = RunScript(_dir, TimeSpan.FromMinutes(3), "--model", Fixtures.BlipTiny, "--pairs", "broken.jsonl", "--out", "runs/broken", "--devices", "cpu");
        Assert.NotEqual(0, code);
        Assert.Contains("the coordinator failed", output);
        Assert.Contains("broken.jsonl", output);
        Assert.DoesNotContain("waiting for the coordinator's plan\nnotice: waiting", output);
        Assert.True(elapsed < TimeSpan.FromMinutes(2), $"took {elapsed}:\n{output}");
    }

    [Theory]
    [InlineData("--compat", "orignal", "error: --compat: expected default or original, found 'orignal'")]
    [InlineData("--sites", "layer", "error: --sites: unknown site 'layer' for BLIP-VQA")]
    [InlineData("--devices", "gpu0", "error: --devices: 'gpu0' is not cpu or cuda:N")]
    [InlineData("--model", "no-such-folder", "error: --model: ")]
    public void AnOptionErrorIsOneLineAndExitCodeTwo(string option, string value, string expected)
    {
        var (code, output, _) = RunScript(_dir, TimeSpan.FromMinutes(2), "--model", Fixtures.BlipTiny, "--pairs", Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"), option, value);
        Assert.Equal(2, code);
        var errors = output.Split('\n').Where(l => l.StartsWith("stderr: ") && !l.StartsWith("stderr: [prereqs]")).ToList();
        Assert.Single(errors);
        Assert.StartsWith("stderr: " + expected, errors[0]);
        Assert.DoesNotContain("   at ", output);
    }
}
