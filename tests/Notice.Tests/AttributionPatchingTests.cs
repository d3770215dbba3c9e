using SkiaSharp;
using Notice.Core.Analysis;
using Notice.Core.Experiments;
using Notice.Core.Families.Blip;
using Notice.Core.Families.Llava;
using Notice.Core.Patching;
using Notice.Core.Results;
using Notice.Core.Tasks;
using Notice.Distributed;
using Notice.Vlm.Blip;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>
/// Attribution patching (--method atp, atp+exact): the engine's estimates are the directional
/// derivatives of the corrupt run along each unit's clean - corrupt difference (central finite
/// differences, float64 on both tiny fixtures), exact patching of a_corrupt + eps (a_clean - a_corrupt)
/// approaches eps x the estimate, parameters never require grad, and atp+exact's exact rows are
/// --method exact's.
/// </summary>
public sealed class AttributionPatchingTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _out = Directory.CreateTempSubdirectory("notice-atp-").FullName;

    public void Dispose() => Directory.Delete(_out, recursive: true);

    private static readonly Lazy<BlipForQuestionAnswering> Blip64 = new(() => BlipForQuestionAnswering.Load(Fixtures.BlipTiny, ScalarType.Float64));
    private static readonly Lazy<LlavaVqa> Llava64 = new(() => LlavaVqa.Load(Fixtures.LlavaTiny, ScalarType.Float64));

    /// <summary>The corrupt run's logit gap and P(tau), with <paramref name="hooks"/>.</summary>
    private delegate (double Gap, double Prob) CorruptRun(HookContext hooks);

    /// <summary>A prepared sample with a way to rerun its corrupt pass with edits, over one engine.</summary>
    /// <param name="Routes">where a unit's patch is written and read (default: its site's hook point; --compat original's LLaVA routes differ)</param>
    private sealed record Case(IPatchingEngine Engine, PreparedSample Sample, CorruptRun Run, IReadOnlyList<PatchUnit> Units, torch.nn.Module Model,
        Func<PatchUnit, PatchRoute>? Routes = null) : IDisposable
    {
        public void Dispose() => Sample.Dispose();
    }

    private static (double, double) Read(Tensor logits, PreparedSample s)
    {
        var z = logits.to(ScalarType.Float64).flatten();
        return ((z[s.Inputs.CorrectId] - z[s.Inputs.IncorrectId]).item<double>(), z.softmax(-1)[s.Inputs.CorrectId].item<double>());
    }

    private static Case BlipCase(string key, BlipPatchingEngine engine)
    {
        using var f = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "notice_patching.safetensors"));
        var (inputs, mode) = BlipPatchingParityTests.FixtureInputs(f, key);
        var sample = engine.Prepare(inputs, mode);
        var model = Blip64.Value;
        CorruptRun run = hooks =>
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            return Read(model.FirstStepLogits(model.EncodeQuestion(sample.CorruptIds, null, sample.CorruptKv, hooks)), sample);
        };
        int last = sample.Positions - 1, layers = engine.NumLayers;
        var units = new List<PatchUnit>();
        foreach (var site in BlipSites.All)
            foreach (var layer in new[] { 0, layers - 1 })
                foreach (var pos in new[] { 0, last / 2, last })
                    units.Add(new PatchUnit(site, layer, site.PerHead ? (pos + layer) % engine.NumHeads : -1, pos));
        return new Case(engine, sample, run, units, model);
    }

    private static Case LlavaCase(int record, CorruptionMode mode, LlavaPatchingEngine engine, CompatMode compat = CompatMode.Default)
    {
        var vqa = Llava64.Value;
        var pairs = Path.Combine(Fixtures.LlavaTiny, "pairs.jsonl");
        var encoded = new LlavaSampleEncoder(vqa, pairs, compat).Encode(PairsManifest.Read(pairs)[record]);
        var sample = engine.Prepare(encoded.Inputs, mode);
        var pixels = mode == CorruptionMode.Image ? encoded.Inputs.CorruptImage!.Pixels : encoded.Inputs.CleanImage.Pixels;
        CorruptRun run = hooks =>
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            return Read(vqa.Model.AnswerLogits(pixels, sample.CorruptIds, null, hooks), sample);
        };
        int last = sample.Positions - 1, layers = engine.NumLayers, image = sample.Layout.ImagePosition;
        var units = new List<PatchUnit>();
        foreach (var site in LlavaSites.All)
            foreach (var layer in new[] { 0, layers - 1 })
                foreach (var pos in new[] { image - 1, last - 2, last })
                    units.Add(new PatchUnit(site, layer, site.PerHead ? (pos + layer) % engine.NumHeads : -1, pos));
        Func<PatchUnit, PatchRoute>? routes = compat == CompatMode.Original ? u => LlavaOriginalCompat.Route(u.Site, u.Layer, layers) : null;
        return new Case(engine, sample, run, units, vqa.Model, routes);
    }

    /// <summary>Where a unit's patch is written (and its clean value read) in the full runs.</summary>
    private static (string Hook, string Source, long Pos, int Head) Slot(Case c, PatchUnit u)
    {
        var route = c.Routes?.Invoke(u) ?? PatchRoute.Same(u.Site, u.Layer);
        return (route.Target, route.Source, c.Sample.SequencePosition(u.Position), u.Head);
    }

    private static Tensor At(Tensor x, long pos, int head) => head < 0 ? x[0, pos] : x[0, pos, head];

    /// <summary>a_clean - a_corrupt at the unit's slice (the clean value from the route's source).</summary>
    private static Tensor Delta(Case c, PatchUnit u)
    {
        var (hook, source, pos, head) = Slot(c, u);
        using var corrupt = new HookContext().Record(hook);
        c.Run(corrupt);
        var before = At(corrupt.Cache[hook], pos, head);
        return At(c.Sample.Clean.Cache[source], pos, head).view(before.shape) - before;
    }

    /// <summary>The corrupt run with the unit's slice moved by s x delta.</summary>
    private static (double Gap, double Prob) Shifted(Case c, PatchUnit u, Tensor delta, double s)
    {
        var (hook, _, pos, head) = Slot(c, u);
        using var hooks = new HookContext().Edit(hook, x =>
        {
            At(x, pos, head).add_(delta.to(x.dtype) * s);
            return x;
        });
        return c.Run(hooks);
    }

    public static TheoryData<string> Cases => new() { "blip shapes.image", "blip shapes.text", "blip faces.image", "llava 0 image", "llava 1 text", "llava-original 0 image" };

    private static Case Make(string name)
    {
        var w = name.Split(' ');
        if (w[0] == "blip") return BlipCase(w[1], new BlipPatchingEngine(Blip64.Value));
        var compat = w[0] == "llava-original" ? CompatMode.Original : CompatMode.Default;
        return LlavaCase(int.Parse(w[1]), ExperimentParser.ParseMode(w[2]), new LlavaPatchingEngine(Llava64.Value.Model, new PatchingOptions { Compat = compat }), compat);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EstimatesAreCentralFiniteDifferencesInFloat64(string name)
    {
        using var c = Make(name);
        using var engine = c.Engine;
        var estimates = engine.Estimate(c.Sample, c.Units);
        Assert.Equal(c.Units, estimates.Select(r => r.Unit));
        const double h = 1e-4;
        double worst = 0, worstProb = 0;
        foreach (var r in estimates)
        {
            using var scope = NewDisposeScope();
            var delta = Delta(c, r.Unit);
            var (gapUp, probUp) = Shifted(c, r.Unit, delta, h);
            var (gapDown, probDown) = Shifted(c, r.Unit, delta, -h);
            double fd = (gapUp - gapDown) / (2 * h), fdProb = (probUp - probDown) / (2 * h);
            worst = Math.Max(worst, Math.Abs(fd - r.Metrics.LogitDiff) / (1 + Math.Abs(fd)));
            worstProb = Math.Max(worstProb, Math.Abs(fdProb - r.Metrics.ProbDiff));
            Assert.Equal(c.Sample.Baseline.ProbCorrupt + r.Metrics.ProbDiff, r.Metrics.ProbPatched, 1e-6);
            Assert.Equal(r.Metrics.LogitDiff / (c.Sample.Baseline.LogitGapClean - c.Sample.Baseline.LogitGapCorrupt), r.Metrics.PatchingEffect, 1e-5);
        }
        output.WriteLine($"{name}: {estimates.Length} units, largest |fd - estimate| / (1 + |fd|): logit gap {worst:E2}, P(tau) {worstProb:E2}");
        Assert.True(worst < 1e-5, $"logit gap: {worst}");
        Assert.True(worstProb < 1e-6, $"P(tau): {worstProb}");
        Assert.Contains(estimates, r => Math.Abs(r.Metrics.LogitDiff) > 1e-3);   // not all trivially zero
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ExactEffectOfASmallPatchTendsToEpsTimesTheEstimate(string name)
    {
        using var c = Make(name);
        using var engine = c.Engine;
        var estimates = engine.Estimate(c.Sample, c.Units);
        var exact = engine.Run(c.Sample, c.Units);
        var (gap0, _) = c.Run(new HookContext());
        foreach (var site in c.Units.Select(u => u.Site).Distinct())
        {
            using var scope = NewDisposeScope();
            var r = estimates.Where(x => x.Unit.Site == site).MaxBy(x => Math.Abs(x.Metrics.LogitDiff))!;
            var delta = Delta(c, r.Unit);
            // eps = 1 is the exact patch itself
            var full = Shifted(c, r.Unit, delta, 1).Gap - gap0;
            Assert.Equal(exact[c.Units.ToList().IndexOf(r.Unit)].Metrics.LogitDiff, full, 1e-4);
            var errors = new List<double>();
            foreach (var eps in new[] { 1e-1, 1e-2, 1e-3 })
                errors.Add(Math.Abs((Shifted(c, r.Unit, delta, eps).Gap - gap0) / (eps * r.Metrics.LogitDiff) - 1));
            output.WriteLine($"{name} {r.Unit}: estimate {r.Metrics.LogitDiff:F4}, exact {full:F4}; |ratio - 1| at eps 1e-1, 1e-2, 1e-3: {string.Join(", ", errors.Select(e => e.ToString("E2")))}");
            // |ratio - 1| shrinks with eps (about linearly: the second-order term over the first). Under
            // --compat original a module's patch is the clean residual stream written into another
            // module's output, far off the corrupt run: the same limit, with a larger constant.
            Assert.True(errors[2] < 0.05, $"{r.Unit}: {errors[2]}");
            Assert.True(errors[2] <= 0.5 * errors[1] + 1e-6 && errors[1] <= 0.5 * errors[0] + 1e-6, $"{r.Unit}: {string.Join(", ", errors)}");
        }
    }

    /// <summary>LLaVA's AtP logit_diff estimates in <paramref name="dtype"/> for every site x layer x
    /// text position (every head for heads:attn) of the tiny fixture's first pair, image mode.</summary>
    private static double[] LlavaEstimates(ScalarType dtype)
    {
        using var vqa = LlavaVqa.Load(Fixtures.LlavaTiny, dtype);
        using var engine = new LlavaPatchingEngine(vqa.Model);
        var pairs = Path.Combine(Fixtures.LlavaTiny, "pairs.jsonl");
        var encoded = new LlavaSampleEncoder(vqa, pairs).Encode(PairsManifest.Read(pairs)[0]);
        using var sample = engine.Prepare(encoded.Inputs, CorruptionMode.Image);
        var units = new List<PatchUnit>();
        foreach (var site in LlavaSites.All)
            for (int layer = 0; layer < engine.NumLayers; layer++)
                for (int pos = 0; pos < sample.Positions; pos++)
                    if (pos != sample.Layout.ImagePosition)
                        foreach (var head in site.PerHead ? Enumerable.Range(0, engine.NumHeads) : [-1])
                            units.Add(new PatchUnit(site, layer, head, pos));
        var estimates = engine.Estimate(sample, units).Select(r => (double)r.Metrics.LogitDiff).ToArray();
        Assert.All(vqa.Model.parameters(), p => Assert.False(p.requires_grad));
        return estimates;
    }

    /// <summary>
    /// AtP in float16 and bfloat16 (forward and backward in that precision) on the tiny LLaVA ranks the
    /// units as float32 AtP does, and each estimate is within 5% of the largest float32 one of it: a
    /// broken half-precision backward (NaN, zeros, a flipped sign) fails.
    /// </summary>
    [Theory]
    [InlineData("bfloat16")]
    [InlineData("float16")]
    public void HalfPrecisionEstimatesRankUnitsAsFloat32(string dtype)
    {
        var reference = LlavaEstimates(ScalarType.Float32);
        var half = LlavaEstimates(Notice.Vlm.VlmModel.ParseDType(dtype));
        Assert.All(half, e => Assert.True(double.IsFinite(e)));
        double rho = MethodAgreement.Rank(reference, half);
        double scale = reference.Max(Math.Abs), worst = reference.Zip(half, (a, b) => Math.Abs(a - b)).Max();
        output.WriteLine($"{dtype}: {reference.Length} units, Spearman {rho:F4}, max |half - float32| {worst:G3} = {worst / scale:P2} of max |float32| {scale:G3}");
        Assert.True(rho > 0.9, $"Spearman {rho}");
        Assert.True(worst < 0.05 * scale, $"max difference {worst} against scale {scale}");
    }

    [Fact]
    public void ParametersNeverRequireGradAndGetNoGradient()
    {
        using var c = Make("blip shapes.image");
        using var engine = c.Engine;
        engine.Estimate(c.Sample, c.Units);
        Assert.All(c.Model.parameters(), p =>
        {
            Assert.False(p.requires_grad);
            Assert.True(p.grad is null);
        });
    }

    [Fact]
    public void OneEstimateOverManySitesEqualsEstimatesSiteBySite()
    {
        using var c = Make("llava 0 image");
        using var engine = c.Engine;
        var together = engine.Estimate(c.Sample, c.Units);
        foreach (var group in c.Units.GroupBy(u => u.Site))
        {
            var alone = engine.Estimate(c.Sample, group.ToList());
            foreach (var r in alone)
                Assert.Equal(together.Single(x => x.Unit == r.Unit).Metrics.LogitDiff, r.Metrics.LogitDiff, 1e-5);
        }
    }

    private static ExperimentSpec Spec(PatchMethod method, double confirmTop = 0.05) => new()
    {
        ModelDir = Fixtures.BlipTiny,
        PairsPath = Path.Combine(Fixtures.BlipTiny, "pairs.jsonl"),
        Modes = [CorruptionMode.Image, CorruptionMode.Text],
        Sites = [BlipSites.Mlp, BlipSites.CrossHeads],
        Patching = new PatchingOptions { BatchSize = 5 },
        Method = method,
        ConfirmTop = confirmTop,
    };

    private sealed class LastProgress : IProgress<RunProgress>
    {
        public RunProgress? Last { get; private set; }
        public void Report(RunProgress value) => Last = value;
    }

    private async Task<List<ResultRow>> RowsAsync(ExperimentSpec spec, string name, IProgress<RunProgress>? progress = null)
    {
        var dir = Path.Combine(_out, name);
        var summary = await new LocalRunner().RunAsync(spec, dir, progress, CancellationToken.None);
        Assert.True(summary.Completed);
        return ResultsTables.Read<ResultRow>(Path.Combine(dir, ResultsTables.ResultsCsv));
    }

    [Fact]
    public async Task AtpPlusExactConfirmsTheTopUnitsWithExactRows()
    {
        var exact = await RowsAsync(Spec(PatchMethod.Exact), "exact");
        var progress = new LastProgress();
        var both = await RowsAsync(Spec(PatchMethod.AtpExact, 3), "both", progress);
        Assert.Equal(both.Count, progress.Last!.UnitsTotal);   // the planned total counts the confirmed rows too
        var atp = await RowsAsync(Spec(PatchMethod.Atp), "atp");

        var atpRows = both.Where(r => r.Method == "atp").ToList();
        Assert.Equal(exact.Count, atpRows.Count);
        Assert.Equal(exact.Count, atp.Count);
        Assert.All(atp, r => Assert.Equal("atp", r.Method));
        var atpByKey = atp.ToDictionary(r => r.Key);
        foreach (var r in atpRows)
            Assert.Equal(atpByKey[r.Key].LogitDiff, r.LogitDiff, 1e-5);

        var exactByKey = exact.ToDictionary(r => (r.Sample, r.Mode, r.Site, r.Layer, r.Head, r.Position));
        var confirmed = both.Where(r => r.Method == "exact").ToList();
        foreach (var table in confirmed.GroupBy(r => (r.Sample, r.Mode, r.Site)))
        {
            Assert.Equal(3, table.Count());
            // the top 3 by |estimated logit_diff| of that table
            var top = atpRows.Where(r => (r.Sample, r.Mode, r.Site) == table.Key).OrderByDescending(r => Math.Abs(r.LogitDiff)).Take(3)
                .Select(r => (r.Layer, r.Head, r.Position)).ToHashSet();
            Assert.Equal(top, table.Select(r => (r.Layer, r.Head, r.Position)).ToHashSet());
            foreach (var r in table)
            {
                var e = exactByKey[(r.Sample, r.Mode, r.Site, r.Layer, r.Head, r.Position)];
                for (int k = 0; k < r.Values.Length; k++) Assert.Equal(e.Values[k], r.Values[k], 1e-4);   // float32, other batches
            }
        }
        Assert.Equal(2 * 2 * 2, confirmed.GroupBy(r => (r.Sample, r.Mode, r.Site)).Count());
        var provenance = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_out, "both", Provenance.FileName)))!;
        Assert.Equal("atp+exact", provenance["method"]!.GetValue<string>());

        // A worker's atp shard gives the local run's estimates of every site, and the confirmation shards
        // it adds (one exact shard per site, naming that table's top units) give the local run's exact rows.
        var spec = Spec(PatchMethod.AtpExact, 3);
        var pairs = Path.Combine(Fixtures.BlipTiny, "pairs.jsonl");
        var record = PairsManifest.Resolve(pairs, PairsManifest.Read(pairs)[0]);
        var message = new SampleMessage
        {
            Id = record.Id, Task = record.Task, Category = record.Category, Prompt = record.Prompt, CorruptPrompt = record.CorruptPrompt,
            Answer = record.Answer, WrongAnswer = record.WrongAnswer, ImageName = record.Image, Image = File.ReadAllBytes(record.Image),
            CorruptImageName = record.CorruptImage, CorruptImage = File.ReadAllBytes(record.CorruptImage),
        };
        using var runner = new ShardRunner(new RunSpecMessage { RunId = "r", Experiment = spec });
        var (atpShard, next) = runner.Run(new ShardMessage { RunId = "r", ShardId = "a", SampleId = record.Id, Mode = CorruptionMode.Image, Method = PatchMethod.Atp }, message, "w");
        var local = both.Where(r => r.Sample == record.Id && r.Mode == "image").ToDictionary(r => r.Key);
        Assert.Equal(local.Values.Count(r => r.Method == "atp"), atpShard.Rows.Length);
        Assert.All(atpShard.Rows, r => Assert.Equal(local[r.Key].Values, r.Values));   // bit for bit
        Assert.Empty(atpShard.Failed);
        var confirm = Assert.Single(next);
        Assert.Equal(($"{record.Id}|image|*|confirm", PatchMethod.Exact, (PatchSite?)null, 3 * spec.Sites.Count), (confirm.ShardId, confirm.Method, confirm.Site, confirm.EstimatedUnits));
        Assert.Equal(spec.Sites.SelectMany(s => Enumerable.Repeat(s, 3)), confirm.Units!.Select(u => u.Site));   // each table's top 3
        var confirmedRows = runner.Run(confirm, message, "w").Result.Rows;
        Assert.Equal(local.Values.Count(r => r.Method == "exact"), confirmedRows.Length);
        Assert.All(confirmedRows, r => Assert.Equal(local[r.Key].Values, r.Values));
        // A confirmation shard naming a unit the experiment does not plan is refused.
        ShardMessage Naming(PatchUnit unit) => new() { ShardId = "x", SampleId = record.Id, Mode = CorruptionMode.Image, Units = [unit], EstimatedUnits = 1 };
        Assert.Contains("which the experiment does not plan", Assert.Throws<InvalidDataException>(() => runner.Run(Naming(new(BlipSites.CrossHeads, 0, 99, 0)), message, "w")).Message);
        Assert.Contains("which is not one of the experiment's", Assert.Throws<InvalidDataException>(() => runner.Run(Naming(new(BlipSites.CrossHeads with { HookPoint = "x" }, 0, 0, 0)), message, "w")).Message);
    }

    [Fact]
    public void MethodAndConfirmTopAreParsed()
    {
        var pairs = Path.Combine(Fixtures.BlipTiny, "pairs.jsonl");
        ExperimentSpec Parse(params string[] kv)
        {
            var values = new Dictionary<string, string?> { ["--model"] = Fixtures.BlipTiny, ["--pairs"] = pairs };
            for (int i = 0; i < kv.Length; i += 2) values[kv[i]] = kv[i + 1];
            return ExperimentParser.Parse(values);
        }
        Assert.Equal(PatchMethod.Exact, Parse().Method);
        Assert.Equal(0.05, Parse().ConfirmTop);
        Assert.Equal(PatchMethod.Atp, Parse("--method", "atp").Method);
        var spec = Parse("--method", "atp+exact", "--confirm-top", "7");
        Assert.Equal((PatchMethod.AtpExact, 7.0), (spec.Method, spec.ConfirmTop));
        Assert.Equal(0.1, Parse("--confirm-top", "0.1").ConfirmTop);
        Assert.StartsWith("--method: expected exact, atp or atp+exact", Assert.Throws<ArgumentException>(() => Parse("--method", "grad")).Message);
        foreach (var bad in new[] { "0", "-1", "1.5", "x" })
            Assert.StartsWith("--confirm-top:", Assert.Throws<ArgumentException>(() => Parse("--confirm-top", bad)).Message);
        var wire = Wire.Read<RunSpecMessage>(Wire.Write(new RunSpecMessage { RunId = "r", Experiment = spec }));
        Assert.Equal((PatchMethod.AtpExact, 7.0), (wire.Experiment.Method, wire.Experiment.ConfirmTop));
        Assert.Equal(3, PatchMethods.ConfirmCount(60, 0.05));
        Assert.Equal(1, PatchMethods.ConfirmCount(10, 0.05));
        Assert.Equal(10, PatchMethods.ConfirmCount(10, 50));
    }

    [Fact]
    public void SpearmanRanksWithTies()
    {
        Assert.Equal(1, MethodAgreement.Rank([1, 2, 3, 4], [10, 20, 30, 41]), 12);
        Assert.Equal(-1, MethodAgreement.Rank([1, 2, 3, 4], [4, 3, 2, 1]), 12);
        // x ranks 1, 2.5, 2.5, 4 against 1, 2, 3, 4: Pearson of the ranks
        Assert.Equal(0.9486832980505138, MethodAgreement.Rank([1, 2, 2, 3], [1, 2, 3, 4]), 12);
        Assert.True(double.IsNaN(MethodAgreement.Rank([1, 1, 1], [1, 2, 3])));
    }

    /// <summary>Head rows of one model: two tasks, two modes, 2 layers x 4 heads, two samples; L1H2 stands out.</summary>
    private static List<ResultRow> HeadRows(string method, Func<double, double> transform)
    {
        var rows = new List<ResultRow>();
        foreach (var task in new[] { "t1", "t2" })
            foreach (var mode in new[] { "image", "text" })
                foreach (var sample in new[] { "s1", "s2" })
                    for (int l = 0; l < 2; l++)
                        for (int h = 0; h < 4; h++)
                        {
                            double v = l == 1 && h == 2 ? 5 : 0.1 * (l * 4 + h) + (sample == "s1" ? 0.01 : 0);
                            float t = (float)transform(v);
                            rows.Add(new ResultRow { Run = "r", Model = "m", Task = task, Sample = $"{task}-{sample}", Mode = mode, Method = method,
                                Site = "heads:attn", Layer = l, Head = h, Position = 0, Values = [0, 0, t, t] });
                        }
        return rows;
    }

    [Fact]
    public void ReportWithBothMethodsKeepsExactsUniversalHeadsAndComparesTheEstimates()
    {
        ResultsFolder Folder(List<ResultRow> rows) => new() { Directory = _out, Results = rows, Baselines = [], Failures = [] };
        var exactOnly = Path.Combine(_out, "exact-only");
        var both = Path.Combine(_out, "both");
        ReportWriter.Write(Folder(HeadRows("exact", v => v)), exactOnly);
        // atp: a monotone distortion of the same scores, so ranks agree
        ReportWriter.Write(Folder([.. HeadRows("exact", v => v), .. HeadRows("atp", v => 2 * v + v * v)]), both);
        var md = File.ReadAllText(Path.Combine(exactOnly, UniversalHeadsDocument.MarkdownFile));
        Assert.Contains("L1H2", md);
        Assert.Equal(md, File.ReadAllText(Path.Combine(both, UniversalHeadsDocument.MarkdownFile)));
        Assert.False(File.Exists(Path.Combine(exactOnly, MethodAgreement.FileName)));
        Assert.Contains("L1H2", File.ReadAllText(Path.Combine(both, "universal_heads.atp.md")));
        var agreement = File.ReadAllLines(Path.Combine(both, MethodAgreement.FileName));
        Assert.Equal(1 + 4, agreement.Length);   // header + (2 tasks x 2 modes) tables
        Assert.All(agreement.Skip(1), line => Assert.Contains(",atp,8,1,1,1,1", line));
        Assert.Contains("Estimates against exact patching", File.ReadAllText(Path.Combine(both, ReportWriter.ReportFile)));
    }

    [Fact]
    public void ReportWithBothMethodsDrawsOneScatterPerTableWithItsRecall()
    {
        ResultsFolder Folder(List<ResultRow> rows) => new() { Directory = _out, Results = rows, Baselines = [], Failures = [] };
        var exactOnly = Path.Combine(_out, "exact-only");
        var both = Path.Combine(_out, "both");
        var exactFiles = ReportWriter.Write(Folder(HeadRows("exact", v => v)), exactOnly);
        var bothFiles = ReportWriter.Write(Folder([.. HeadRows("exact", v => v), .. HeadRows("atp", v => 2 * v + v * v)]), both);

        Assert.DoesNotContain(exactFiles.Figures, f => Path.GetFileName(f).StartsWith("scatter", StringComparison.Ordinal));
        Assert.DoesNotContain(ReportWriter.ScatterSection, File.ReadAllText(exactFiles.Report));
        Assert.Empty(Directory.GetFiles(Path.Combine(exactOnly, ReportWriter.FiguresFolder), "scatter*"));

        var scatters = bothFiles.Figures.Where(f => Path.GetFileName(f).StartsWith("scatter-atp_", StringComparison.Ordinal)).ToList();
        Assert.Equal(4, scatters.Count);   // 2 tasks x 2 modes, one site
        Assert.Contains(Path.Combine(both, ReportWriter.FiguresFolder, "scatter-atp_m_t1_image_heads-attn.png"), scatters);
        var html = File.ReadAllText(bothFiles.Report);
        Assert.Contains($"<h2>{ReportWriter.ScatterSection}</h2>", html);
        foreach (var f in scatters)
        {
            Assert.True(File.Exists(f), f);
            using var bitmap = SKBitmap.Decode(File.ReadAllBytes(f));
            Assert.True(bitmap is { Width: 720, Height: 560 });
            Assert.Contains($"({ReportWriter.FiguresFolder}/{Path.GetFileName(f)})", html);
        }
        // Exact's one important head (L1H2) is atp's top head: recall@1 = 1, next to each scatter.
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Matches(html, @"atp vs exact, m / t\d: heads:attn, \w+ corruption; Spearman 1, recall@1 1/1 = 1 \(figures/scatter-atp_").Count);
        var manifest = File.ReadAllLines(Path.Combine(both, ReportWriter.ManifestFile));
        Assert.All(scatters, f => Assert.Contains($"{ReportWriter.FiguresFolder}/{Path.GetFileName(f)}", manifest));

        // A later exact-only analysis in the same folder removes the scatters it no longer draws.
        ReportWriter.Write(Folder(HeadRows("exact", v => v)), both);
        Assert.All(scatters, f => Assert.False(File.Exists(f), f));
    }
}

/// <summary>Attribution patching on the third family, through the same core: Qwen2.5-VL's estimates
/// rank its units as exact patching does, and atp+exact's exact rows are --method exact's.</summary>
public sealed class QwenAttributionPatchingTests : IDisposable
{
    private readonly string _out = Directory.CreateTempSubdirectory("notice-qwen-atp-").FullName;

    public void Dispose() => Directory.Delete(_out, recursive: true);

    private static string Qwen => Path.Combine(Fixtures.Root, "tests", "fixtures", "qwen25vl-tiny");

    private async Task<List<ResultRow>> RowsAsync(string method, string name)
    {
        var spec = Notice.Cli.Commands.PatchCommand.Experiment("--model", Qwen, "--pairs", Path.Combine(Qwen, "pairs.jsonl"), "--modes", "text",
            "--sites", "heads:attn,layer", "--method", method, "--confirm-top", "1000000");
        var dir = Path.Combine(_out, name);
        Assert.True((await new LocalRunner().RunAsync(spec, dir, null, CancellationToken.None)).Completed);
        return ResultsTables.Read<ResultRow>(Path.Combine(dir, ResultsTables.ResultsCsv));
    }

    [Fact]
    public async Task EstimatesRankQwensUnitsAsExactPatchingDoes()
    {
        var exact = await RowsAsync("exact", "exact");
        var both = await RowsAsync("atp+exact", "both");
        var exactByKey = exact.ToDictionary(r => (r.Sample, r.Site, r.Layer, r.Head, r.Position));
        var confirmed = both.Where(r => r.Method == "exact").ToList();
        Assert.Equal(exact.Count, confirmed.Count);
        // Every unit confirmed: batched as --method exact batches them, so equal to the last bit.
        foreach (var r in confirmed)
            Assert.Equal(exactByKey[(r.Sample, r.Site, r.Layer, r.Head, r.Position)].Values, r.Values);
        foreach (var table in both.Where(r => r.Method == "atp").GroupBy(r => (r.Sample, r.Site)))
        {
            var estimates = table.Select(r => (double)r.LogitDiff).ToList();
            var exacts = table.Select(r => (double)exactByKey[(r.Sample, r.Site, r.Layer, r.Head, r.Position)].LogitDiff).ToList();
            double rho = Notice.Core.Analysis.MethodAgreement.Rank(estimates, exacts);
            Assert.True(rho > 0.5, $"{table.Key}: Spearman {rho:F3} between AtP and exact");
        }
    }
}
