using System.Diagnostics;
using Notice.Core.Experiments;
using Notice.Core.Families;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Core.Tasks;
using Notice.Vlm;
using Notice.Vlm.Processing;
using TorchSharp;

namespace Notice.Distributed;

/// <summary>A shard's outcome: its results, and the shards it adds to the run (atp+exact's confirmation
/// shards, which must be enqueued before the results are written).</summary>
public sealed record ShardOutcome(ShardResultMessage Result, IReadOnlyList<ShardMessage> Next);

/// <summary>
/// Runs shards of one run on this worker with the patching backend of the run's model family. The
/// sample's clean and corrupt runs are kept for the shard that follows (shards of a sample arrive
/// close together), and the engine keeps each image's vision pass, so most shards only pay for their
/// patched runs. Rows are mapped with <see cref="ResultRows"/>, and methods run through
/// <see cref="PatchMethods"/>, as a local run does.
/// </summary>
public sealed class ShardRunner : IDisposable
{
    private readonly RunSpecMessage _spec;
    private readonly PatchingBackend _backend;
    /// <summary>Counts the units of a site that cannot run (read from the tokenizer once, when first needed).</summary>
    private readonly Lazy<UnitEstimator> _estimate;
    private (string Sample, CorruptionMode Mode, EncodedSample Encoded, IPreparedSample Prepared)? _last;

    /// <param name="modelPath">where this machine keeps the model (null: the path the run was planned with)</param>
    public ShardRunner(RunSpecMessage spec, string? modelPath = null, string device = "cpu")
    {
        _spec = spec;
        // A device this build or machine cannot use: one line, before any weights are read.
        var torchDevice = device == "cpu" ? null : TorchDevices.Require(device);
        var model = modelPath ?? spec.Experiment.ModelDir;
        var family = ModelFamilies.Of(model);
        _estimate = new(() => new UnitEstimator(spec.Experiment with { ModelDir = model }, family));
        _backend = family.LoadBackend(model, spec.Experiment.Patching, dtype: spec.Experiment.DType, device: torchDevice);
    }

    public ShardOutcome Run(ShardMessage shard, SampleMessage sample, string worker)
    {
        var clock = Stopwatch.StartNew();
        var (encoded, prepared) = Prepare(sample, shard.Mode);
        var failed = new List<DeadLetterMessage>();
        var next = new List<ShardMessage>();
        var results = shard.Method switch
        {
            PatchMethod.Atp => Attribution(shard, worker, encoded, prepared, failed, next),
            PatchMethod.Exact => Exact(shard, encoded, prepared).Select(r => (PatchMethod.Exact, r)).ToList(),
            _ => throw new InvalidDataException($"shard {shard.ShardId}: method {shard.Method} is no shard's method (exact or atp)"),
        };
        var model = _spec.Experiment.ModelName;
        var result = new ShardResultMessage
        {
            ShardId = shard.ShardId,
            Worker = worker,
            Rows = results.Select(x => ResultRows.Row(_spec.RunId, model, encoded, shard.Mode, x.Item1, x.Item2)).ToArray(),
            Baseline = ResultRows.Baseline(_spec.RunId, model, encoded, shard.Mode, prepared),
            Seconds = clock.Elapsed.TotalSeconds,
            Failed = [.. failed],
        };
        return new ShardOutcome(result, next);
    }

    /// <summary>An exact shard: its site's units (one layer of a head site), or a confirmation shard's
    /// named units, each of which must be one the experiment plans.</summary>
    private List<UnitResult> Exact(ShardMessage shard, EncodedSample encoded, IPreparedSample prepared)
    {
        var experiment = _spec.Experiment;
        if (shard.Units is null)
        {
            var site = shard.Site ?? throw new InvalidDataException($"shard {shard.ShardId}: an exact shard without its site or units");
            return PatchMethods.RunExact(_backend.Engine, prepared, _backend.Plan(site, encoded, prepared, shard.Layer >= 0 ? experiment with { Layers = [shard.Layer] } : experiment));
        }
        var planned = new HashSet<PatchUnit>();
        foreach (var site in shard.Units.Select(u => u.Site).Distinct())
        {
            if (!experiment.Sites.Contains(site)) throw new InvalidDataException($"shard {shard.ShardId} names site {site}, which is not one of the experiment's");
            planned.UnionWith(_backend.Plan(site, encoded, prepared, experiment));
        }
        if (shard.Units.FirstOrDefault(u => !planned.Contains(u)) is { } stray)
            throw new InvalidDataException($"shard {shard.ShardId} names unit {stray}, which the experiment does not plan");
        return PatchMethods.RunExact(_backend.Engine, prepared, shard.Units);
    }

    /// <summary>
    /// An atp shard: the estimates of every unit of every site for its (sample, mode) from one backward
    /// pass, as a local run computes them. A site whose units cannot be planned for this sample is
    /// reported in <paramref name="failed"/> (if no site can be planned, the shard fails with the first
    /// error). Under atp+exact the top units of each site's table make one confirmation shard in
    /// <paramref name="next"/>, which runs them as a local run does (<see cref="PatchMethods.RunExact"/>).
    /// </summary>
    private List<(PatchMethod, UnitResult)> Attribution(ShardMessage shard, string worker, EncodedSample encoded, IPreparedSample prepared,
        List<DeadLetterMessage> failed, List<ShardMessage> next)
    {
        var experiment = _spec.Experiment;
        var tables = new List<IReadOnlyList<PatchUnit>>();
        ArgumentException? first = null;
        foreach (var site in experiment.Sites)
        {
            try { tables.Add(_backend.Plan(site, encoded, prepared, experiment)); }
            catch (ArgumentException e)
            {
                first ??= e;
                failed.Add(new DeadLetterMessage { ShardId = shard.ShardId, SampleId = shard.SampleId, Mode = shard.Mode.Name(), Site = site.Name,
                    Units = (int)_estimate.Value.Rows(encoded.Record, site), Error = e.Message, Attempts = 1, Worker = worker });
            }
        }
        if (tables.Count == 0) throw first!;
        var estimates = PatchMethods.Estimate(_backend.Engine, prepared, tables);
        var rows = estimates.SelectMany(table => table.Select(r => (PatchMethod.Atp, r))).ToList();
        if (experiment.Method == PatchMethod.AtpExact)
        {
            var confirmed = estimates.SelectMany(table => PatchMethods.Confirmed(table, experiment.ConfirmTop)).ToArray();
            next.Add(new ShardMessage
            {
                RunId = shard.RunId, ShardId = ShardKey.Confirm(shard.SampleId, shard.Mode.Name()).ToString(), SampleId = shard.SampleId,
                Mode = shard.Mode, Method = PatchMethod.Exact, TraceParent = shard.TraceParent, Units = confirmed, EstimatedUnits = confirmed.Length,
            });
        }
        return rows;
    }

    private (EncodedSample, IPreparedSample) Prepare(SampleMessage sample, CorruptionMode mode)
    {
        if (_last is { } last && last.Sample == sample.Id && last.Mode == mode) return (last.Encoded, last.Prepared);
        _last?.Prepared.Dispose();
        _last = null;
        var record = new PairRecord
        {
            Id = sample.Id, Task = sample.Task, Category = sample.Category, Image = sample.ImageName, CorruptImage = sample.CorruptImageName,
            Prompt = sample.Prompt, CorruptPrompt = sample.CorruptPrompt, Answer = sample.Answer, WrongAnswer = sample.WrongAnswer,
        };
        var image = ImageDecoder.Decode(sample.Image, sample.ImageName);
        var corrupt = ImageDecoder.Decode(sample.CorruptImage, sample.CorruptImageName);
        var encoded = _backend.Encoder.Encode(record, image, $"{sample.Id}:clean", corrupt, $"{sample.Id}:corrupt");
        var prepared = _backend.Engine.Prepare(encoded.Inputs, mode);
        _last = (sample.Id, mode, encoded, prepared);
        return (encoded, prepared);
    }

    public void Dispose()
    {
        _last?.Prepared.Dispose();
        _backend.Dispose();
    }
}
