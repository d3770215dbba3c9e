using Notice.Vlm.Checkpoints;
using Notice.Vlm.Hooks;
using Notice.Vlm.Llava;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>
/// LLaVA-1.5 against transformers 4.41 (tests/fixtures/llava-tiny/reference.safetensors): fed the
/// reference pixel values, ids and mask, every internal tensor within 1e-4 in float32, and greedy
/// generation picks the same tokens from the same logits.
/// </summary>
public sealed class LlavaParityTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;
    private readonly LlavaForConditionalGeneration _model = LlavaTinyModel.Shared;

    public static TheoryData<string> Cases => new() { "case0", "case1", "case2", "case3", "case4", "case5", "batch" };

    [Fact]
    public void AModelConvertedAfterLoadingRunsOnItsConvertedParameters()
    {
        // m.to(dtype) replaces every registered parameter: the model must read those, never a field
        // still holding the old one (a disposed handle, or the old dtype).
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var (pixels, ids, mask) = (reference.Read("case0.pixel_values"), reference.Read("case0.input_ids"), reference.Read("case0.attention_mask"));
        using var model = LlavaForConditionalGeneration.Load(Fixtures.LlavaTiny);
        var expected = model.AnswerLogits(pixels, ids, mask);
        model.to(ScalarType.Float64);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        var converted = model.AnswerLogits(pixels.to(ScalarType.Float64), ids, mask);
        Assert.True((converted.to(ScalarType.Float32) - expected).abs().max().item<float>() < 1e-4);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void InternalsMatchTransformers(string name)
    {
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var pixels = reference.Read($"{name}.pixel_values");
        var ids = reference.Read($"{name}.input_ids");
        var mask = reference.Read($"{name}.attention_mask");
        int vl = _model.Config.Vision.NumHiddenLayers, tl = _model.Config.Text.NumHiddenLayers;

        using var hooks = new HookContext().RecordWhere(n => true);
        // The whole tower, for its last layer too (LLaVA itself stops at the selected hidden state).
        _model.VisionTower.Forward(pixels, hooks);
        var visionHooks = hooks.Cache.Keys.Where(k => HookName.TryParse(k, out var p) && p.Stack == HookName.Vision).ToDictionary(k => k, k => hooks.Take(k));
        var features = _model.ImageFeatures(pixels, hooks);
        var inputs = _model.MergeInputs(ids, mask, features, hooks);
        var lm = _model.LanguageModel.Model.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, hooks: hooks);
        var logits = _model.AnswerLogits(pixels, ids, mask);

        var worst = new List<(string, double)>();
        void Check(string refName, Tensor actual)
        {
            var expected = reference.Read($"{name}.{refName}");
            Assert.Equal(expected.shape, actual.shape);
            double d = (expected - actual).abs().max().item<float>();
            worst.Add((refName, d));
            Assert.True(d <= Tolerance, $"{name}.{refName}: max abs difference {d:E3} > {Tolerance:E0}");
        }
        void CheckExact(string refName, Tensor actual)
        {
            var expected = reference.Read($"{name}.{refName}");
            Assert.Equal(expected.shape, actual.shape);
            Assert.Equal(expected.data<long>().ToArray(), actual.data<long>().ToArray());
            worst.Add((refName, 0));
        }

        Check("vision.hidden_states.0", visionHooks[HookName.Embed(HookName.Vision)]);
        for (int l = 0; l < vl; l++)
        {
            Check($"vision.hidden_states.{l + 1}", visionHooks[HookName.ResidPost(l, HookName.Vision)]);
            Check($"vision.attn.{l}", visionHooks[HookName.AttnPattern(l, HookName.Vision)]);
        }
        Check("image_features.selected", hooks.Cache[HookName.ProjectorIn]);
        Check("image_features.projector_hidden", hooks.Cache[HookName.ProjectorHidden]);
        Check("image_features.projected", features);
        Check("lm.inputs_embeds", inputs.InputsEmbeds);
        CheckExact("lm.attention_mask", inputs.AttentionMask);
        CheckExact("lm.position_ids", inputs.PositionIds);
        Check("lm.hidden_states.0", hooks.Cache[HookName.ResidPre(0)]);
        for (int l = 0; l < tl; l++)
        {
            // transformers' last hidden state is the final-normed output; the others are raw layer outputs.
            Check($"lm.hidden_states.{l + 1}", l == tl - 1 ? lm.LastHiddenState : hooks.Cache[HookName.ResidPost(l)]);
            Check($"lm.attn.{l}", hooks.Cache[HookName.AttnPattern(l)]);
        }
        Check("logits_last", logits);

        using var generation = _model.Generate(pixels, ids, mask, maxNewTokens: 3);
        CheckExact("generate.new_ids", torch.tensor(generation.NewIds.SelectMany(r => r).ToArray()).view(ids.shape[0], -1));
        Check("generate.step_logits", generation.StepLogits);

        foreach (var (t, d) in worst) output.WriteLine($"{name}.{t}: max abs diff {d:E2}");
    }

    [Fact]
    public void HookPointsHaveTheirShapesAndAddUp()
    {
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var hooks = new HookContext().RecordWhere(n => HookName.TryParse(n, out var p) && p.Stack == HookName.Text);
        _model.AnswerLogits(reference.Read("batch.pixel_values"), reference.Read("batch.input_ids"), reference.Read("batch.attention_mask"), hooks);
        var c = _model.Config.Text;
        Assert.Equal(new long[] { 2, 38, c.HiddenSize }, hooks.Cache[HookName.Embed()].shape);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            Assert.Equal(new long[] { 2, 38, c.NumAttentionHeads, c.HeadDim }, hooks.Cache[HookName.AttnZ(l)].shape);
            Assert.Equal(new long[] { 2, c.NumAttentionHeads, 38, 38 }, hooks.Cache[HookName.AttnPattern(l)].shape);
            // The residual stream: what enters a layer plus its attention and MLP outputs.
            var sum = hooks.Cache[HookName.ResidPre(l)] + hooks.Cache[HookName.AttnOut(l)] + hooks.Cache[HookName.MlpOut(l)];
            Assert.True((sum - hooks.Cache[HookName.ResidPost(l)]).abs().max().item<float>() < 1e-5);
        }
    }

    /// <summary>
    /// The fast path of a patched run: positions before p never change in a causal model, so layers
    /// from l up recompute only positions >= p against the cached keys/values of the rest. It must give
    /// what the full pass gives.
    /// </summary>
    [Theory]
    [InlineData("case0", 0, 0)]
    [InlineData("case3", 1, 20)]
    [InlineData("batch", 2, 37)]
    [InlineData("batch", 1, 10)]
    public void RecomputingFromALayerAndPositionMatchesTheFullPass(string name, int layer, int position)
    {
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var lm = _model.LanguageModel.Model;
        var features = _model.ImageFeatures(reference.Read($"{name}.pixel_values"));
        var inputs = _model.MergeInputs(reference.Read($"{name}.input_ids"), reference.Read($"{name}.attention_mask"), features);
        using var hooks = new HookContext().Record(HookName.ResidPre(layer));
        var full = lm.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, hooks: hooks, useCache: true);

        long tm = inputs.PositionIds.shape[1], rest = tm - position;
        var past = full.Cache!.Select(kv => kv.Narrow(position)).ToList();
        var hidden = hooks.Cache[HookName.ResidPre(layer)].narrow(1, position, rest);
        var fast = lm.Forward(hidden, inputs.PositionIds.narrow(1, position, rest), inputs.AttentionMask, past, fromLayer: layer);

        double d = (fast.LastHiddenState - full.LastHiddenState.narrow(1, position, rest)).abs().max().item<float>();
        output.WriteLine($"{name} from layer {layer}, position {position}: max abs diff {d:E2}");
        Assert.True(d < 1e-5, $"max abs difference {d:E3}");
    }

    /// <summary>One corrupt run's cache under many patched rows: the one-row cache serves each of them.</summary>
    [Fact]
    public void AOneRowCacheServesABatch()
    {
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var lm = _model.LanguageModel.Model;
        var inputs = _model.MergeInputs(reference.Read("case1.input_ids"), null, _model.ImageFeatures(reference.Read("case1.pixel_values")));
        var full = lm.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, useCache: true);

        const int position = 30, rows = 3;
        long rest = inputs.PositionIds.shape[1] - position;
        var past = full.Cache!.Select(kv => kv.Narrow(position)).ToList();
        var hidden = inputs.InputsEmbeds.narrow(1, position, rest).expand(rows, -1, -1);
        var fast = lm.Forward(hidden, inputs.PositionIds.narrow(1, position, rest).expand(rows, -1), inputs.AttentionMask.expand(rows, -1), past);
        var expected = full.LastHiddenState.narrow(1, position, rest);
        for (int r = 0; r < rows; r++)
            Assert.True((fast.LastHiddenState[r] - expected[0]).abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public void SavedModelLoadsBackWithTheSameAnswers()
    {
        var dir = Directory.CreateTempSubdirectory("notice-llava-").FullName;
        try
        {
            _model.Save(dir);
            using var reloaded = LlavaForConditionalGeneration.Load(dir);
            Assert.Equal(_model.Config, reloaded.Config);
            using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
            using var scope = torch.NewDisposeScope();
            using var _ = torch.no_grad();
            var pixels = reference.Read("case2.pixel_values");
            var ids = reference.Read("case2.input_ids");
            Assert.Equal(0f, (reloaded.AnswerLogits(pixels, ids) - _model.AnswerLogits(pixels, ids)).abs().max().item<float>());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void HalfPrecisionKeepsTheAnswers(ScalarType dtype)
    {
        using var model = LlavaForConditionalGeneration.Load(Fixtures.LlavaTiny, dtype);
        Assert.Equal(dtype, model.DType);
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.LlavaTiny, "reference.safetensors"));
        using var generation = model.Generate(reference.Read("batch.pixel_values"), reference.Read("batch.input_ids"), reference.Read("batch.attention_mask"), maxNewTokens: 3);
        var expected = reference.Read("batch.generate.new_ids");
        for (int r = 0; r < 2; r++) Assert.Equal(expected[r].data<long>().ToArray(), generation.NewIds[r]);
    }

    [Theory]
    [InlineData("red_circle_blue_square.png", "Is the circle red or blue? Answer in one word.", "red.")]
    [InlineData("happy_angry_gray.png", "Is the left person feeling happy or angry? Answer in one word.", "happy.")]
    public void AnswersAQuestionAboutAnImageFile(string image, string question, string answer)
    {
        var vqa = LlavaTinyModel.Vqa;
        var result = vqa.Answer(Path.Combine(Fixtures.LlavaTiny, image), question);
        Assert.Equal(answer, result.Text);
        Assert.Equal(2, result.Ids[^1]);
        Assert.Equal(vqa.Model.Config.Text.VocabSize, result.LastLogits.Length);
        Assert.Equal(result.Ids[0], Array.IndexOf(result.LastLogits, result.LastLogits.Max()));
    }

    [Theory]
    [InlineData("USER: \nWhat is this? ASSISTANT:", 0)]
    [InlineData("USER: <image>\nWhat is <image>? ASSISTANT:", 2)]
    public void APromptNeedsExactlyOneImageToken(string prompt, int found)
    {
        var e = Assert.Throws<ArgumentException>(() => LlavaTinyModel.Vqa.EncodePrompt(prompt));
        Assert.Contains($"holds {found} <image>", e.Message);
    }
}

/// <summary>The fixture checkpoint, loaded once per test run.</summary>
public static class LlavaTinyModel
{
    private static readonly Lazy<LlavaVqa> Bundle = new(() => LlavaVqa.Load(Fixtures.LlavaTiny));
    public static LlavaVqa Vqa => Bundle.Value;
    public static LlavaForConditionalGeneration Shared => Bundle.Value.Model;
}
