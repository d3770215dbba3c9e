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

/// <summary>
/// Runs shards of one run on this worker with the patching backend of the run's model family. The
/// sample's clean and corrupt runs are kept for the shard that follows (shards of a sample arrive
/// close together), and the engine keeps each image's vision pass, so most shards only pay for their
/// patched runs. Rows are mapped with <see cref="ResultRows"/>, as a local run maps them.
/// </summary>
public sealed class ShardRunner : IDisposable
{
    private readonly RunSpecMessage _spec;
    private readonly PatchingBackend _backend;
    private (string Sample, CorruptionMode Mode, EncodedSample Encoded, IPreparedSample Prepared)? _last;
    /// <summary>Attribution patching: the last prepared sample's estimates of every unit of the experiment, by unit.</summary>
    private Dictionary<PatchUnit, UnitResult>? _estimates;

    /// <param name="modelPath">where this machine keeps the model (null: the path the run was planned with)</param>
    public ShardRunner(RunSpecMessage spec, string? modelPath = null, string device = "cpu")
    {
        _spec = spec;
        // A device this build or machine cannot use: one line, before any weights are read.
        var torchDevice = device == "cpu" ? null : TorchDevices.Require(device);
        var model = modelPath ?? spec.Experiment.ModelDir;
        _backend = ModelFamilies.Of(model).LoadBackend(model, spec.Experiment.Patching, dtype: spec.Experiment.DType, device: torchDevice);
    }

    public ShardResultMessage Run(ShardMessage shard, SampleMessage sample, string worker)
    {
        var clock = Stopwatch.StartNew();
        var experiment = _spec.Experiment;
        var (encoded, prepared) = Prepare(sample, shard.Mode);
        var units = _backend.Plan(shard.Site, encoded, prepared, shard.Layer >= 0 ? experiment with { Layers = [shard.Layer] } : experiment);
        var results = experiment.Method.Estimates()
            ? EstimatedTable(encoded, prepared, shard.Site, units)
            : PatchMethods.Run(_backend.Engine, prepared, units, experiment);
        var model = experiment.ModelName;
        return new ShardResultMessage
        {
            ShardId = shard.ShardId,
            Worker = worker,
            Rows = results.Select(x => ResultRows.Row(_spec.RunId, model, encoded, shard.Mode, x.Method, x.Result)).ToArray(),
            Baseline = ResultRows.Baseline(_spec.RunId, model, encoded, shard.Mode, prepared),
            Seconds = clock.Elapsed.TotalSeconds,
        };
    }

    /// <summary>
    /// A shard of an atp or atp+exact run: the estimates come from one backward pass per (sample, mode)
    /// over every unit of the experiment (every site and layer), kept for the sample's other shards; a
    /// layer shard of atp+exact confirms those of its units that are among the top of the whole
    /// (sample, mode, site) table, so its rows are the local run's.
    /// </summary>
    private List<(PatchMethod Method, UnitResult Result)> EstimatedTable(EncodedSample encoded, IPreparedSample prepared, PatchSite site, List<PatchUnit> units)
    {
        var experiment = _spec.Experiment;
        if (_estimates is null)
        {
            var all = new List<PatchUnit>();
            foreach (var s in experiment.Sites)
            {
                try { all.AddRange(_backend.Plan(s, encoded, prepared, experiment)); }
                catch (ArgumentException) { }   // that site's own shards fail with this error
            }
            _estimates = _backend.Engine.Estimate(prepared, all).ToDictionary(r => r.Unit);
        }
        var table = _backend.Plan(site, encoded, prepared, experiment).Select(u => _estimates[u]).ToList();
        return PatchMethods.Run(_backend.Engine, prepared, units, experiment, units.Select(u => _estimates[u]).ToList(), table);
    }

    private (EncodedSample, IPreparedSample) Prepare(SampleMessage sample, CorruptionMode mode)
    {
        if (_last is { } last && last.Sample == sample.Id && last.Mode == mode) return (last.Encoded, last.Prepared);
        _last?.Prepared.Dispose();
        _last = null;
        _estimates = null;
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
