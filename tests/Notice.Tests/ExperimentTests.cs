using Notice.AppHost;
using Notice.Cli;
using Notice.Cli.Commands;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Core.Tasks;
using Notice.Distributed;
using Notice.Vlm.Blip;

namespace Notice.Tests;

/// <summary>
/// One experiment: parsed and validated in one place, the same for the CLI and the AppHost, carried
/// whole in messages; and a model family added through the registry alone.
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed class ExperimentTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("notice-experiment-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string LlavaPairs => Path.Combine(Fixtures.LlavaTiny, "pairs.jsonl");
    private static string BlipPairs => Path.Combine(Fixtures.BlipTiny, "pairs.jsonl");

    [Theory]
    [InlineData("--compat", "orignal", "--compat: expected default or original, found 'orignal'")]
    [InlineData("--modes", "imgae", "--modes: expected image, text or noise, found 'imgae'")]
    [InlineData("--sites", "layer", "--sites: unknown site 'layer' for BLIP-VQA")]
    [InlineData("--layers", "9", "--layers: layer 9 is out of range")]
    [InlineData("--layers", "x", "--layers: 'x' is not a non-negative number")]
    [InlineData("--heads", "99", "--heads: head 99 is out of range")]
    [InlineData("--positions", "first", "--positions: 'first' is not a non-negative number")]
    [InlineData("--batch-size", "0", "--batch-size: expected a positive integer, found '0'")]
    [InlineData("--noise", "-1", "--noise: expected a positive number, found '-1'")]
    [InlineData("--samples", "many", "--samples: expected a positive integer, found 'many'")]
    [InlineData("--method", "guess", "--method: expected exact, atp or atp+exact, found 'guess'")]
    [InlineData("--confirm-top", "1.5", "--confirm-top: expected a count (a positive integer) or a fraction between 0 and 1, found '1.5'")]
    [InlineData("--dtype", "int8", "--dtype: expected float32, float16 or bfloat16, found 'int8'")]
    public void ABadValueIsTheSameOneLineErrorForTheCliAndTheAppHost(string option, string value, string expected)
    {
        string[] args = ["--model", Fixtures.BlipTiny, "--pairs", BlipPairs, option, value];
        var cli = Assert.ThrowsAny<ArgumentException>(() => PatchCommand.Experiment(args));
        var appHost = Assert.ThrowsAny<ArgumentException>(() => AppHostOptions.Parse(args, _dir, out _));
        Assert.StartsWith(expected, cli.Message);
        Assert.Equal(cli.Message, appHost.Message);
        Assert.DoesNotContain('\n', cli.Message);
    }

    [Fact]
    public void AnUnknownModelTypeListsTheKnownFamilies()
    {
        var model = Path.Combine(_dir, "other");
        Directory.CreateDirectory(model);
        File.WriteAllText(Path.Combine(model, "config.json"), """{"model_type": "gpt2"}""");
        var e = Assert.ThrowsAny<Exception>(() => ModelFamilies.Of(model));
        Assert.Contains("model_type", e.Message);
        Assert.Contains("\"gpt2\" is not a model family Notice implements", e.Message);
        Assert.Contains("BLIP-VQA (model_type \"blip\")", e.Message);
        Assert.Contains("LLaVA-1.5 (model_type \"llava\")", e.Message);
    }

    [Theory]
    [InlineData("--model LLAVA --pairs LLAVA_PAIRS")]
    [InlineData("--model LLAVA --pairs LLAVA_PAIRS --sites layer,heads:attn")]
    [InlineData("--model BLIP --pairs BLIP_PAIRS --modes text --positions answer")]
    public void TheCliAndTheAppHostPlanTheSameUnits(string template)
    {
        var args = template.Split(' ').Select(a => a switch
        {
            "LLAVA" => Fixtures.LlavaTiny, "LLAVA_PAIRS" => LlavaPairs, "BLIP" => Fixtures.BlipTiny, "BLIP_PAIRS" => BlipPairs, _ => a,
        }).ToArray();
        var cli = PatchCommand.Experiment(args);
        var appHost = AppHostOptions.Parse(args, _dir, out _).Experiment;
        Assert.Equal(Wire.Write(cli), Wire.Write(appHost));
        var records = PairsManifest.Read(cli.PairsPath, checkImages: false).ToList();
        long Units(ExperimentSpec spec)
        {
            var estimator = new UnitEstimator(spec);
            return records.Sum(r => spec.Modes.Count * spec.Sites.Sum(s => estimator.Units(r, s)));
        }
        Assert.Equal(Units(cli), Units(appHost));
    }

    [Fact]
    public void EachFamilyNamesItsDefaultSites()
    {
        var llava = PatchCommand.Experiment("--model", Fixtures.LlavaTiny, "--pairs", LlavaPairs);
        Assert.Equal(["layer", "attn", "mlp", "heads:attn"], llava.Sites.Select(s => s.Name));
        Assert.Equal([CorruptionMode.Image, CorruptionMode.Text], llava.Modes);
        var blip = PatchCommand.Experiment("--model", Fixtures.BlipTiny, "--pairs", BlipPairs);
        Assert.Equal(["mlp", "attn", "cross", "heads:attn", "heads:cross"], blip.Sites.Select(s => s.Name));
        // LLaVA's heads default to the last position; the estimate follows the family.
        var record = PairsManifest.Read(LlavaPairs, checkImages: false).First();
        var estimator = new UnitEstimator(llava);
        var shape = new LlavaFamily().Shape(Fixtures.LlavaTiny);
        Assert.Equal(shape.Layers * shape.Heads, estimator.Units(record, LlavaSites.AttnHeads));
    }

    [Fact]
    public void RelativePathsResolveAgainstTheCallersDirectory()
    {
        var options = AppHostOptions.Parse(["--model", "tests/fixtures/llava-tiny", "--pairs", "tests/fixtures/llava-tiny/pairs.jsonl", "--out", "runs/rel"],
            Fixtures.Root, out _);
        Assert.Equal(Fixtures.LlavaTiny, options.Experiment.ModelDir);
        Assert.Equal(LlavaPairs, options.Experiment.PairsPath);
        Assert.Equal(Path.Combine(Fixtures.Root, "runs", "rel"), options.Out);
        Assert.StartsWith("rel-", options.Run);
        Assert.NotEqual(options.Run, AppHostOptions.Parse(["--model", "tests/fixtures/llava-tiny", "--pairs", "tests/fixtures/llava-tiny/pairs.jsonl", "--out", "runs/rel"],
            Fixtures.Root, out _).Run);
    }

    [Fact]
    public void TheRunSpecMessageCarriesTheExperimentWhole()
    {
        var spec = PatchCommand.Experiment("--model", Fixtures.LlavaTiny, "--pairs", LlavaPairs, "--sites", "layer,heads:attn", "--layers", "0",
            "--positions", "3,5", "--compat", "original", "--noise", "2.5", "--seed", "7", "--batch-size", "5", "--samples", "1");
        var message = Wire.Read<RunSpecMessage>(Wire.Write(new RunSpecMessage { RunId = "r", Experiment = spec }));
        Assert.Equal(spec.ModelDir, message.Experiment.ModelDir);
        Assert.Equal(spec.Sites, message.Experiment.Sites);
        Assert.Equal(spec.Positions, message.Experiment.Positions);
        Assert.Equal(spec.Patching, message.Experiment.Patching);
        Assert.Equal(spec.Layers, message.Experiment.Layers);
        Assert.Equal(spec.Modes, message.Experiment.Modes);
        Assert.Equal((1, PatchMethod.Exact, CompatMode.Original), (message.Experiment.Samples!.Value, message.Experiment.Method, message.Experiment.Patching.Compat));
    }

    [Fact]
    public async Task AStandInFamilyRegisteredThroughTheRegistryAloneRunsPatch()
    {
        // The stand-in's checkpoint: BLIP's weights under its own architecture name.
        var model = Path.Combine(_dir, "standin");
        Directory.CreateDirectory(model);
        foreach (var f in Directory.GetFiles(Fixtures.BlipTiny)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!.AsObject();
        config["architectures"] = new System.Text.Json.Nodes.JsonArray("StandInForQuestionAnswering");
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());

        ModelFamilies.Register(new StandInFamily());
        Assert.IsType<StandInFamily>(ModelFamilies.Of(model));
        Assert.IsType<BlipFamily>(ModelFamilies.Of(Fixtures.BlipTiny));

        var outDir = Path.Combine(_dir, "out");
        int code = await CliErrors.InvokeAsync(new System.CommandLine.RootCommand { PatchCommand.Create() }, ["patch", "--model", model, "--pairs", BlipPairs, "--modes", "image", "--out", outDir]);
        Assert.Equal(0, code);
        var rows = ResultsTables.Read<ResultRow>(Path.Combine(outDir, ResultsTables.ResultsCsv));
        var shape = new BlipFamily().Shape(Fixtures.BlipTiny);
        Assert.Equal(["resid", "heads:self"], rows.Select(r => r.Site).Distinct());
        // Its default positions: the last one only.
        Assert.Equal(2 * (shape.Layers + shape.Layers * shape.Heads), rows.Count);
        Assert.All(rows, r => Assert.Equal("exact", r.Method));
        Assert.Contains(rows, r => Math.Abs(r.LogitDiff) > 1e-6);

        // Every metric has its column in the results and its entry in the report.
        var header = File.ReadLines(Path.Combine(outDir, ResultsTables.ResultsCsv)).First().Split(',');
        Assert.Equal([.. ResultRow.IdentityColumns, .. Metrics.All.Select(m => m.Name)], header);
        var files = await Notice.Core.Analysis.ReportWriter.WriteAsync(outDir, Path.Combine(outDir, "analysis"));
        var html = File.ReadAllText(files.Report);
        Assert.Contains("metric-means", html);
        Assert.All(Metrics.All, m => Assert.Contains($"<th>{m.Name}</th>", html));
    }

    /// <summary>A third family, all of it here: it recognises its own architecture name, names its own
    /// sites and default positions, and patches with BLIP's model and engine underneath.</summary>
    private sealed class StandInFamily : ModelFamily
    {
        private static readonly PatchSite Resid = new("resid", "text.blocks.{l}.resid_post", false);
        private static readonly PatchSite SelfHeads = new("heads:self", "text.blocks.{l}.attn.z", true);

        public override string Name => "Stand-in";
        public override string ModelType => "blip";
        public override bool Recognises(Notice.Vlm.Config.JsonConfig config) =>
            config.Object["architectures"]?.AsArray().Any(a => a?.GetValue<string>() == "StandInForQuestionAnswering") == true;
        public override IReadOnlyList<PatchSite> Sites { get; } = [Resid, SelfHeads];
        public override IReadOnlyList<PatchSite> DefaultSites => Sites;
        public override string AnswerLogitsName => "first_step_logits";
        public override PositionSelection DefaultPositions(PatchSite site) => PositionSelection.Last;
        public override ModelShape Shape(string folder) => new BlipFamily().Shape(folder);
        public override Notice.Vlm.IVisionLanguageModel LoadModel(string folder, TorchSharp.torch.ScalarType dtype = TorchSharp.torch.ScalarType.Float32, TorchSharp.torch.Device? device = null) =>
            BlipVqa.Load(folder, dtype, device);
        public override PatchingBackend LoadBackend(string folder, PatchingOptions options, string manifestPath = "",
            TorchSharp.torch.ScalarType dtype = TorchSharp.torch.ScalarType.Float32, TorchSharp.torch.Device? device = null, Action<string>? warn = null) =>
            new Backend(this, BlipVqa.Load(folder, dtype, device), options, manifestPath);
        public override Func<string, int> PromptPositionCounter(string folder, CompatMode compat) => new BlipFamily().PromptPositionCounter(folder, compat);
        public override Func<string, int> WordTokenCounter(string folder) => new BlipFamily().WordTokenCounter(folder);
        public override Notice.Core.Attention.IAttentionProbe AttentionProbe(Notice.Vlm.IVisionLanguageModel model, string manifestPath) =>
            throw new ArgumentException("the stand-in family has no attention probe");

        private sealed class Backend(StandInFamily family, BlipVqa vqa, PatchingOptions options, string manifestPath) : PatchingBackend
        {
            private readonly BlipPatchingEngine _engine = new(vqa.Model, options, family.Sites);
            public override ModelFamily Family => family;
            public override SampleEncoder Encoder { get; } = new BlipSampleEncoder(vqa, manifestPath);
            public override IPatchingEngine Engine => _engine;
            protected override PromptPositions Positions(PatchSite site, EncodedSample sample, int positions) => PromptPositions.Every(positions, sample.AnswerPosition);
            public override void Dispose()
            {
                _engine.Dispose();
                vqa.Dispose();
            }
        }
    }
}
