using System.Diagnostics;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Core.Tasks;
using Notice.Vlm;
using TorchSharp;

namespace Notice.Core.Experiments;

/// <summary>Progress of a run: units done and failed of the total, and the rate so far.</summary>
public sealed record RunProgress(long UnitsDone, long UnitsFailed, long UnitsTotal, double UnitsPerSecond, string Current);

/// <summary>What a finished (or interrupted) run wrote.</summary>
public sealed record RunSummary(string OutDir, string RunId, long Units, long Failed, int Samples, bool Completed, TimeSpan Elapsed);

/// <summary>
/// Runs an experiment in this process (no Redis): every selected sample x mode x site through the
/// patching engine of the model's family (BLIP or LLaVA, read from its config.json), writing
/// results as it goes. Each (sample, mode, site) group is appended to results.csv and then marked
/// in completed.txt, so an interrupted run keeps what it finished and a second run with the same
/// output folder resumes from there.
/// </summary>
public sealed class LocalRunner
{
    public const string CompletedFile = "completed.txt";

    public Action<string>? Log { get; init; }

    public async Task<RunSummary> RunAsync(ExperimentSpec spec, string outDir, IProgress<RunProgress>? progress, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(outDir);
        // Images are checked per sample as it runs, so one missing image fails that sample, not the run.
        var records = PairsManifest.Read(spec.PairsPath, checkImages: false).ToList();
        if (spec.Samples is { } n) records = records.Take(n).ToList();
        var provenance = Provenance.Describe(spec, $"{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..6]}");
        Provenance.WriteOrCheck(outDir, provenance);
        string runId = provenance["run"]!.GetValue<string>();
        string model = Path.GetFileName(Path.GetFullPath(spec.ModelDir).TrimEnd('/'));

        var completed = ResumeState(outDir);
        using var backend = PatchingBackend.Load(spec.ModelDir, spec.Patching, spec.PairsPath,
            VlmModel.ParseDType(spec.DType), torch.device(spec.Device), w => Log?.Invoke("warning: " + w));
        // Site names mean per-family things (LLaVA's mlp is its MLP output): resolve them for this model.
        var sites = spec.Sites.Select(s => backend.Site(s.Name)).ToList();
        CheckRanges(spec, backend);
        var resultsCsv = Path.Combine(outDir, ResultsTables.ResultsCsv);
        var completedPath = Path.Combine(outDir, CompletedFile);
        var baselineKeys = ResultsTables.Read<BaselineRow>(Path.Combine(outDir, ResultsTables.BaselinesCsv)).Select(b => (b.Sample, b.Mode)).ToHashSet();

        long done = 0, failed = 0;
        long total = PlannedUnits(spec, sites, records, backend, completed);
        long ran = 0;
        var ranClock = Stopwatch.StartNew();
        bool interrupted = false;
        foreach (var record in records)
        {
            if (cancel.IsCancellationRequested) { interrupted = true; break; }
            EncodedSample sample;
            try { sample = backend.Encoder.Encode(record); }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Fail(outDir, runId, record.Id, "*", "*", e);
                failed += spec.Modes.Count * sites.Count;
                continue;
            }
            foreach (var mode in spec.Modes)
            {
                if (cancel.IsCancellationRequested) { interrupted = true; break; }
                string modeName = mode.ToString().ToLowerInvariant();
                var pending = sites.Where(s => !completed.Contains(GroupKey(record.Id, modeName, s.Name))).ToList();
                if (pending.Count == 0) continue;
                IPreparedSample prepared;
                try { prepared = backend.Engine.Prepare(sample.Inputs, mode); }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Fail(outDir, runId, record.Id, modeName, "*", e);
                    failed += pending.Count;
                    continue;
                }
                using (prepared)
                {
                    if (baselineKeys.Add((record.Id, modeName)))
                        ResultsTables.Append(Path.Combine(outDir, ResultsTables.BaselinesCsv), [Baseline(runId, model, sample, modeName, prepared)]);
                    foreach (var site in pending)
                    {
                        if (cancel.IsCancellationRequested) { interrupted = true; break; }
                        List<PatchUnit> units;
                        try
                        {
                            units = backend.Plan(site, sample, prepared, spec);
                        }
                        catch (ArgumentException e)
                        {
                            Fail(outDir, runId, record.Id, modeName, site.Name, e);
                            failed++;
                            continue;
                        }
                        var rows = new List<ResultRow>(units.Count);
                        foreach (var chunk in units.Chunk(Math.Max(1, spec.Patching.BatchSize)))
                        {
                            foreach (var r in backend.Engine.Run(prepared, chunk))
                                rows.Add(Row(runId, model, sample, modeName, r));
                            ran += chunk.Length;
                            progress?.Report(new RunProgress(done + rows.Count, failed, Math.Max(total, done + rows.Count), ran / Math.Max(1e-9, ranClock.Elapsed.TotalSeconds), $"{record.Id} {modeName} {site.Name}"));
                        }
                        ResultsTables.Append(resultsCsv, rows);
                        File.AppendAllLines(completedPath, [GroupKey(record.Id, modeName, site.Name)]);
                        completed.Add(GroupKey(record.Id, modeName, site.Name));
                        done += rows.Count;
                    }
                }
            }
            if (interrupted) break;
        }

        if (!interrupted)
        {
            var all = ResultsTables.Read<ResultRow>(resultsCsv);
            await ResultsTables.WriteParquetAsync(Path.Combine(outDir, ResultsTables.ResultsParquet), all);
        }
        await Task.CompletedTask;
        return new RunSummary(outDir, runId, done, failed, records.Count, !interrupted, clock.Elapsed);
    }

    private static void CheckRanges(ExperimentSpec spec, PatchingBackend backend)
    {
        foreach (var l in spec.Layers ?? [])
            if (l >= backend.NumLayers) throw new ArgumentException($"--layers: layer {l} is out of range: the model has layers 0..{backend.NumLayers - 1}");
        foreach (var h in spec.Heads ?? [])
            if (h >= backend.NumHeads) throw new ArgumentException($"--heads: head {h} is out of range: layers have heads 0..{backend.NumHeads - 1}");
    }

    /// <summary>Units still to run, from the prompts' token counts (tokenising is cheap; no model pass).</summary>
    private static long PlannedUnits(ExperimentSpec spec, List<PatchSite> sites, List<PairRecord> records, PatchingBackend backend, HashSet<string> completed)
    {
        long total = 0;
        foreach (var r in records)
            foreach (var mode in spec.Modes)
                foreach (var site in sites)
                    if (!completed.Contains(GroupKey(r.Id, mode.ToString().ToLowerInvariant(), site.Name)))
                        total += backend.EstimateUnits(r, site, spec);
        return total;
    }

    private static string GroupKey(string sample, string mode, string site) => $"{sample}\t{mode}\t{site}";

    /// <summary>Reads which groups are complete and drops rows of any group that was being written
    /// when a previous run stopped (appended but not yet marked complete).</summary>
    private static HashSet<string> ResumeState(string outDir)
    {
        var completedPath = Path.Combine(outDir, CompletedFile);
        var completed = File.Exists(completedPath) ? File.ReadAllLines(completedPath).Where(l => l.Length > 0).ToHashSet() : new HashSet<string>();
        var resultsCsv = Path.Combine(outDir, ResultsTables.ResultsCsv);
        if (File.Exists(resultsCsv))
        {
            List<ResultRow> rows;
            try { rows = ResultsTables.Read<ResultRow>(resultsCsv); }
            catch (InvalidDataException)
            {
                // A row cut off mid-write: keep every complete line, then filter by completed groups.
                var lines = File.ReadAllLines(resultsCsv);
                File.WriteAllLines(resultsCsv, lines.Take(lines.Length - 1));
                rows = ResultsTables.Read<ResultRow>(resultsCsv);
            }
            var kept = rows.Where(r => completed.Contains(GroupKey(r.Sample, r.Mode, r.Site))).ToList();
            if (kept.Count != rows.Count) ResultsTables.Write(resultsCsv, kept);
        }
        return completed;
    }

    private static void Fail(string outDir, string runId, string sample, string mode, string site, Exception e)
    {
        ResultsTables.Append(Path.Combine(outDir, ResultsTables.FailuresCsv), [new FailureRow { Run = runId, Sample = sample, Mode = mode, Site = site, Error = e.Message }]);
    }

    private static BaselineRow Baseline(string runId, string model, EncodedSample s, string mode, IPreparedSample p) => new()
    {
        Run = runId, Model = model, Task = s.Record.Task, Category = s.Record.Category, Sample = s.Record.Id, Mode = mode,
        CorrectToken = s.CorrectToken, IncorrectToken = s.IncorrectToken,
        CorrectId = p.Baseline.CorrectId, IncorrectId = p.Baseline.IncorrectId,
        ProbClean = p.Baseline.ProbClean, ProbCorrupt = p.Baseline.ProbCorrupt,
        LogitGapClean = p.Baseline.LogitGapClean, LogitGapCorrupt = p.Baseline.LogitGapCorrupt,
        Positions = p.Positions,
    };

    private static ResultRow Row(string runId, string model, EncodedSample s, string mode, UnitResult r) => new()
    {
        Run = runId, Model = model, Task = s.Record.Task, Category = s.Record.Category, Sample = s.Record.Id, Mode = mode,
        Site = r.Unit.Site.Name, Layer = r.Unit.Layer, Head = r.Unit.Head, Position = r.Unit.Position,
        Token = r.Unit.Position < s.CleanTokens.Length ? s.CleanTokens[r.Unit.Position] : "",
        ProbPatched = r.Metrics.ProbPatched, ProbDiff = r.Metrics.ProbDiff, LogitDiff = r.Metrics.LogitDiff, PatchingEffect = r.Metrics.PatchingEffect,
    };
}
