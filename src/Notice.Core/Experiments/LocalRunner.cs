using System.Diagnostics;
using Notice.Core.Families;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Core.Tasks;
using TorchSharp;

namespace Notice.Core.Experiments;

/// <summary>Progress of a run: units done and failed of the total, and the rate so far.</summary>
public sealed record RunProgress(long UnitsDone, long UnitsFailed, long UnitsTotal, double UnitsPerSecond, string Current);

/// <summary>What a finished (or interrupted) run wrote.</summary>
public sealed record RunSummary(string OutDir, string RunId, long Units, long Failed, int Samples, bool Completed, TimeSpan Elapsed);

/// <summary>
/// Runs an experiment in this process (no Redis): every selected sample x mode x site through the
/// patching backend of the model's family, writing results as it goes. Each (sample, mode, site)
/// group is appended to results.csv and then marked in completed.txt, so an interrupted run keeps
/// what it finished and a second run with the same output folder resumes from there.
/// </summary>
public sealed class LocalRunner
{
    public const string CompletedFile = "completed.txt";

    public Action<string>? Log { get; init; }

    /// <summary>A run in progress: its folder, identity and counters.</summary>
    private sealed class Run(ExperimentSpec spec, string outDir, string runId, HashSet<string> completed, IProgress<RunProgress>? progress)
    {
        public ExperimentSpec Spec { get; } = spec;
        public string OutDir { get; } = outDir;
        public string Id { get; } = runId;
        public string Model { get; } = spec.ModelName;
        public HashSet<string> Completed { get; } = completed;
        public HashSet<(string, string)> Baselines { get; } =
            ResultsTables.Read<BaselineRow>(Path.Combine(outDir, ResultsTables.BaselinesCsv)).Select(b => (b.Sample, b.Mode)).ToHashSet();
        public long Done, Failed, Total, Ran;
        public Stopwatch Clock { get; } = Stopwatch.StartNew();

        public string File(string name) => Path.Combine(OutDir, name);

        public void Report(long inGroup, string current) => progress?.Report(new RunProgress(Done + inGroup, Failed, Math.Max(Total, Done + inGroup),
            Ran / Math.Max(1e-9, Clock.Elapsed.TotalSeconds), current));

        public void Fail(string sample, string mode, string site, Exception e) =>
            ResultsTables.Append(File(ResultsTables.FailuresCsv), [new FailureRow { Run = Id, Sample = sample, Mode = mode, Site = site, Error = e.Message }]);
    }

    public async Task<RunSummary> RunAsync(ExperimentSpec spec, string outDir, IProgress<RunProgress>? progress, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        if (spec.PairsPath.Length == 0) throw new ArgumentException("--pairs: a local run needs a pairs manifest");
        var family = ModelFamilies.Of(spec.ModelDir);
        ExperimentParser.Validate(spec, family);
        var records = ReadSamples(spec);
        var run = Open(spec, outDir, progress);
        run.Total = PlannedUnits(run, family, records);
        using var backend = family.LoadBackend(spec.ModelDir, spec.Patching, spec.PairsPath, spec.DType, Notice.Vlm.TorchDevices.Require(spec.Device), w => Log?.Invoke("warning: " + w));

        bool interrupted = false;
        foreach (var record in records)
        {
            if (interrupted = cancel.IsCancellationRequested) break;
            interrupted = !RunSample(run, backend, record, cancel);
            if (interrupted) break;
        }
        if (!interrupted) await WriteParquetAsync(run);
        return new RunSummary(outDir, run.Id, run.Done, run.Failed, records.Count, !interrupted, clock.Elapsed);
    }

    /// <summary>The manifest's records the experiment takes. Images are checked per sample as it runs,
    /// so one missing image fails that sample, not the run.</summary>
    private static List<PairRecord> ReadSamples(ExperimentSpec spec)
    {
        var records = PairsManifest.Read(spec.PairsPath, checkImages: false).ToList();
        return spec.Samples is { } n ? records.Take(n).ToList() : records;
    }

    /// <summary>Creates the results folder, or checks that it holds this same experiment (then resumes it).</summary>
    private static Run Open(ExperimentSpec spec, string outDir, IProgress<RunProgress>? progress)
    {
        Directory.CreateDirectory(outDir);
        var provenancePath = Path.Combine(outDir, Provenance.FileName);
        foreach (var table in new[] { ResultsTables.ResultsCsv, CompletedFile })
            if (File.Exists(Path.Combine(outDir, table)) && !File.Exists(provenancePath))
                throw new InvalidOperationException($"{Path.Combine(outDir, table)}: this folder holds results that no {Provenance.FileName} describes, so they cannot be resumed; use a new --out");
        var provenance = Provenance.Describe(spec, Provenance.NewRunId());
        Provenance.WriteOrCheck(outDir, provenance);
        return new Run(spec, outDir, provenance["run"]!.GetValue<string>(), ResumeState(outDir), progress);
    }

    /// <summary>Units still to run, from the prompts' token counts (tokenising is cheap; no model pass).</summary>
    private static long PlannedUnits(Run run, ModelFamily family, List<PairRecord> records)
    {
        var estimator = new UnitEstimator(run.Spec, family);
        long total = 0;
        foreach (var r in records)
            foreach (var mode in run.Spec.Modes)
                foreach (var site in run.Spec.Sites)
                    if (!run.Completed.Contains(GroupKey(r.Id, mode.Name(), site.Name)))
                        total += estimator.Rows(r, site);
        return total;
    }

    /// <returns>false when cancelled</returns>
    private static bool RunSample(Run run, PatchingBackend backend, PairRecord record, CancellationToken cancel)
    {
        EncodedSample sample;
        try { sample = backend.Encoder.Encode(record); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            run.Fail(record.Id, "*", "*", e);
            run.Failed += run.Spec.Modes.Count * run.Spec.Sites.Count;
            return true;
        }
        foreach (var mode in run.Spec.Modes)
        {
            if (cancel.IsCancellationRequested) return false;
            var pending = run.Spec.Sites.Where(s => !run.Completed.Contains(GroupKey(record.Id, mode.Name(), s.Name))).ToList();
            if (pending.Count == 0) continue;
            IPreparedSample prepared;
            try { prepared = backend.Engine.Prepare(sample.Inputs, mode); }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                run.Fail(record.Id, mode.Name(), "*", e);
                run.Failed += pending.Count;
                continue;
            }
            using (prepared)
            {
                if (run.Baselines.Add((record.Id, mode.Name())))
                    ResultsTables.Append(run.File(ResultsTables.BaselinesCsv), [ResultRows.Baseline(run.Id, run.Model, sample, mode, prepared)]);
                var plans = pending.Select(site => (site, units: Plan(run, backend, sample, mode, prepared, site))).Where(x => x.units is not null).ToList();
                // Attribution patching: every pending table's estimates from one backward pass (a worker's atp shard does the same).
                var estimates = run.Spec.Method.Estimates() ? PatchMethods.Estimate(backend.Engine, prepared, plans.Select(x => (IReadOnlyList<PatchUnit>)x.units!).ToList()) : null;
                for (int i = 0; i < plans.Count; i++)
                {
                    if (cancel.IsCancellationRequested) return false;
                    RunGroup(run, backend, sample, mode, prepared, plans[i].site, plans[i].units!, estimates?[i]);
                }
            }
        }
        return true;
    }

    /// <summary>A (sample, mode, site) group's units, or null when they cannot be planned (a failure is recorded).</summary>
    private static List<PatchUnit>? Plan(Run run, PatchingBackend backend, EncodedSample sample, CorruptionMode mode, IPreparedSample prepared, PatchSite site)
    {
        try { return backend.Plan(site, sample, prepared, run.Spec); }
        catch (ArgumentException e)
        {
            run.Fail(sample.Record.Id, mode.Name(), site.Name, e);
            run.Failed++;
            return null;
        }
    }

    /// <summary>One (sample, mode, site) group by the experiment's method (<see cref="PatchMethods.Run"/>):
    /// its rows appended together, then marked complete.</summary>
    private static void RunGroup(Run run, PatchingBackend backend, EncodedSample sample, CorruptionMode mode, IPreparedSample prepared, PatchSite site,
        List<PatchUnit> units, UnitResult[]? estimates)
    {
        int ran = 0;
        var results = PatchMethods.Run(backend.Engine, prepared, units, run.Spec, estimates, progress: n =>
        {
            run.Ran += n;
            run.Report(ran += n, $"{sample.Record.Id} {mode.Name()} {site.Name}");
        });
        var rows = results.Select(x => ResultRows.Row(run.Id, run.Model, sample, mode, x.Method, x.Result)).ToList();
        var key = GroupKey(sample.Record.Id, mode.Name(), site.Name);
        ResultsTables.Append(run.File(ResultsTables.ResultsCsv), rows);
        File.AppendAllLines(run.File(CompletedFile), [key]);
        run.Completed.Add(key);
        run.Done += rows.Count;
    }

    private static async Task WriteParquetAsync(Run run)
    {
        var all = ResultsTables.Read<ResultRow>(run.File(ResultsTables.ResultsCsv));
        await ResultsTables.WriteParquetAsync(run.File(ResultsTables.ResultsParquet), all);
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
}
