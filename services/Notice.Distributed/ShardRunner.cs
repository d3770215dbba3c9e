using System.Diagnostics;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm;
using Notice.Vlm.Processing;
using TorchSharp;

namespace Notice.Distributed;

/// <summary>
/// Runs shards of one run with the patching engine of whichever model the run names (BLIP or LLaVA,
/// read from config.json). The sample's clean and corrupt runs are kept for the shard that follows
/// (shards of a sample arrive close together), and the engine keeps each image's vision pass, so most
/// shards only pay for their patched runs.
/// </summary>
public sealed class ShardRunner : IDisposable
{
    private readonly RunSpecMessage _spec;
    private readonly ExperimentSpec _experiment;
    private readonly PatchingBackend _backend;
    private (string Sample, string Mode, EncodedSample Encoded, IPreparedSample Prepared)? _last;

    public ShardRunner(RunSpecMessage spec, string? modelPath = null, string device = "cpu")
    {
        _spec = spec;
        var options = new PatchingOptions
        {
            Compat = spec.Compat == "original" ? CompatMode.Original : CompatMode.Default,
            BatchSize = spec.BatchSize,
            NoiseMultiple = spec.NoiseMultiple,
            NoiseSeed = spec.NoiseSeed,
        };
        var model = modelPath ?? spec.Model;
        var torchDevice = device == "cpu" ? null : torch.device(device);
        _backend = PatchingBackend.Load(model, options, device: torchDevice);
        _experiment = new ExperimentSpec
        {
            ModelDir = model, PairsPath = "",
            Layers = spec.Layers, Heads = spec.Heads, Positions = PositionSelection.Parse(spec.Positions), Patching = options,
        };
    }

    public ShardResultMessage Run(ShardMessage shard, SampleMessage sample, string worker)
    {
        var clock = Stopwatch.StartNew();
        var site = _backend.Site(shard.Site);
        var mode = shard.Mode switch
        {
            "image" => CorruptionMode.Image,
            "text" => CorruptionMode.Text,
            "noise" => CorruptionMode.Noise,
            _ => throw new ArgumentException($"unknown mode '{shard.Mode}'"),
        };
        var (encoded, prepared) = Prepare(sample, mode, shard.Mode);
        var experiment = shard.Layer >= 0 ? _experiment with { Layers = [shard.Layer] } : _experiment;
        var units = shard.Units.Length > 0
            ? shard.Units.Select(u => new PatchUnit(site, u.Layer, u.Head, u.Position)).ToList()
            : _backend.Plan(site, encoded, prepared, experiment);
        var results = _backend.Engine.Run(prepared, units);
        return new ShardResultMessage
        {
            ShardId = shard.ShardId,
            Worker = worker,
            Rows = results.Select(r => new ResultRowMessage
            {
                Layer = r.Unit.Layer, Head = r.Unit.Head, Position = r.Unit.Position,
                Token = r.Unit.Position < encoded.CleanTokens.Length ? encoded.CleanTokens[r.Unit.Position] : "",
                ProbPatched = r.Metrics.ProbPatched, ProbDiff = r.Metrics.ProbDiff, LogitDiff = r.Metrics.LogitDiff, PatchingEffect = r.Metrics.PatchingEffect,
            }).ToArray(),
            Baseline = new BaselineMessage
            {
                CorrectToken = encoded.CorrectToken, IncorrectToken = encoded.IncorrectToken,
                CorrectId = prepared.Baseline.CorrectId, IncorrectId = prepared.Baseline.IncorrectId,
                ProbClean = prepared.Baseline.ProbClean, ProbCorrupt = prepared.Baseline.ProbCorrupt,
                LogitGapClean = prepared.Baseline.LogitGapClean, LogitGapCorrupt = prepared.Baseline.LogitGapCorrupt,
                Positions = prepared.Positions,
            },
            Seconds = clock.Elapsed.TotalSeconds,
        };
    }

    private (EncodedSample, IPreparedSample) Prepare(SampleMessage sample, CorruptionMode mode, string modeName)
    {
        if (_last is { } last && last.Sample == sample.Id && last.Mode == modeName) return (last.Encoded, last.Prepared);
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
        _last = (sample.Id, modeName, encoded, prepared);
        return (encoded, prepared);
    }

    public void Dispose()
    {
        _last?.Prepared.Dispose();
        _backend.Dispose();
    }
}
