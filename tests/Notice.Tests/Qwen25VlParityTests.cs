using System.Text.Json;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Hooks;
using Notice.Vlm.Processing;
using Notice.Vlm.Qwen25Vl;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>
/// Qwen2.5-VL against transformers 4.49 (tests/fixtures/qwen25vl-tiny/reference.safetensors): the
/// processor's outputs exactly, the tokenizer's ids for every case and probe, and, fed the
/// reference pixel values, ids and mask, every internal tensor within 1e-4 in float32; greedy
/// generation picks the same tokens from the same logits.
/// </summary>
public sealed class Qwen25VlParityTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;
    private readonly Qwen25VlVqa _vqa = QwenTinyModel.Vqa;
    private Qwen25VlForConditionalGeneration Model => _vqa.Model;

    public static TheoryData<string> Cases => new() { "case0", "case1", "case2", "case3", "case4", "case5", "case6", "batch" };

    public static TheoryData<string> Images => new()
    {
        "green_square.png", "yellow_square.png", "happy_face.png", "sad_face.png", "white_circle_gray.png",
        "red_triangle_rgba.png", "blue_circle_tall.png", "black_square_small_gray.png",
    };

    [Theory]
    [MemberData(nameof(Images))]
    public void ImageProcessorOutputsAreExact(string file)
    {
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var scope = torch.NewDisposeScope();
        string key = $"image.{file}";
        var rgb = ImageDecoder.Load(Path.Combine(QwenTinyModel.Folder, file));
        if (reference.Contains($"{key}.rgb_uint8"))
            Assert.Equal(reference.Read($"{key}.rgb_uint8").data<byte>().ToArray(), rgb.Pixels);
        var resized = _vqa.ImageProcessor.Resize(rgb);
        var expectedResized = reference.Read($"{key}.resized_uint8");
        Assert.Equal(expectedResized.shape, new long[] { resized.Height, resized.Width, 3 });
        Assert.Equal(expectedResized.data<byte>().ToArray(), resized.Pixels);

        using var pixels = _vqa.ImageProcessor.Preprocess(rgb);
        var expected = reference.Read($"{key}.pixel_values");
        Assert.Equal(expected.shape, pixels.PixelValues.shape);
        double d = (expected - pixels.PixelValues).abs().max().item<float>();
        output.WriteLine($"{file}: resized {resized.Width}x{resized.Height}, pixel_values max abs diff {d:E2}");
        Assert.Equal(0.0, d);
        Assert.Equal(reference.Read($"{key}.image_grid_thw").data<long>().ToArray(), pixels.GridThw.data<long>().ToArray());
    }

    /// <summary>The chat template, the tokenizer and the &lt;|image_pad|&gt; expansion give the processor's ids, mask and pixels for every case.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void ProcessorGivesTheReferenceInputs(string name)
    {
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var scope = torch.NewDisposeScope();
        var c = QwenTinyModel.Case(name);
        var images = c.GetProperty("images").EnumerateArray().Select(e => Path.Combine(QwenTinyModel.Folder, e.GetString()!)).ToList();
        var questions = c.GetProperty("questions").EnumerateArray().Select(e => e.GetString()!).ToList();
        var prompts = c.GetProperty("prompts").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.Equal(prompts, questions.Select(QwenPrompt.Format));

        using var batch = _vqa.Process(images.Zip(prompts).ToList());
        Assert.Equal(reference.Read($"{name}.input_ids").data<long>().ToArray(), batch.InputIds.data<long>().ToArray());
        Assert.Equal(reference.Read($"{name}.input_ids").shape, batch.InputIds.shape);
        Assert.Equal(reference.Read($"{name}.attention_mask").data<long>().ToArray(), batch.AttentionMask.data<long>().ToArray());
        Assert.Equal(reference.Read($"{name}.image_grid_thw").data<long>().ToArray(), batch.GridThw.data<long>().ToArray());
        Assert.Equal(0.0, (QwenTinyModel.PixelValues(reference, name) - batch.PixelValues).abs().max().item<float>());
    }

    [Fact]
    public void TokenizerMatchesTheProbes()
    {
        var tokenizer = _vqa.Tokenizer;
        var probes = QwenTinyModel.Json.RootElement.GetProperty("tokenizer").GetProperty("probes");
        int n = 0;
        foreach (var probe in probes.EnumerateArray())
        {
            string text = probe.GetProperty("text").GetString()!;
            var ids = probe.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var tokens = probe.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()!).ToArray();
            Assert.Equal(tokens, tokenizer.Tokenize(text));
            Assert.Equal(ids, tokenizer.Encode(text));
            Assert.Equal(probe.GetProperty("decode").GetString(), tokenizer.Decode(ids, skipSpecialTokens: false));
            Assert.Equal(probe.GetProperty("decode_skip_special").GetString(), tokenizer.Decode(ids));
            n++;
        }
        Assert.True(n >= 10);
        Assert.Equal(414, tokenizer.VocabSize);
        Assert.Equal(412, tokenizer.EosId);
        Assert.Equal(408, tokenizer.PadId);
        // The template the prompts follow is the checkpoint's own.
        var template = File.ReadAllText(Path.Combine(QwenTinyModel.Folder, "chat_template.json"));
        Assert.Contains("You are a helpful assistant.<|im_end|>\\n", template);
        Assert.Contains("<|vision_start|><|image_pad|><|vision_end|>", template);
        Assert.Contains("<|im_start|>assistant\\n", template);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void InternalsMatchTransformers(string name)
    {
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var pixels = QwenTinyModel.PixelValues(reference, name);
        var grid = reference.Read($"{name}.image_grid_thw");
        var ids = reference.Read($"{name}.input_ids");
        var mask = reference.Read($"{name}.attention_mask");
        int tl = Model.Config.NumHiddenLayers, vl = Model.Config.Vision.Depth;

        var worst = new List<(string, double)>();
        void Check(string refName, Tensor actual)
        {
            var expected = reference.Read($"{name}.{refName}");
            Assert.Equal(expected.shape, actual.shape);
            double d = (expected - actual.to(ScalarType.Float32)).abs().max().item<float>();
            worst.Add((refName, d));
            Assert.True(d <= Tolerance, $"{name}.{refName}: max abs difference {d:E3} > {Tolerance:E0}");
        }
        void CheckExact(string refName, long[] actual)
        {
            var expected = reference.Read($"{name}.{refName}").to(ScalarType.Int64);
            Assert.Equal(expected.data<long>().ToArray(), actual);
            worst.Add((refName, 0));
        }

        // The layout the tower works out from the grids alone.
        var layout = QwenVisionLayout.For(grid, Model.Config.Vision);
        CheckExact("vision.rot_pos_ids", layout.RotPosIds.Cast<long>().ToArray());
        CheckExact("vision.window_index", layout.WindowIndex);
        CheckExact("vision.cu_window_seqlens", layout.CuWindowSeqlens);
        CheckExact("vision.cu_seqlens", layout.CuSeqlens);
        var (cos, sin) = layout.RotaryTables(Model.Config.Vision.HeadDim, torch.CPU);
        Check("vision.cos", cos);
        Check("vision.sin", sin);

        using var hooks = new HookContext().RecordWhere(n => true);
        var inputs = Model.PrepareInputs(pixels, grid, ids, mask, hooks);
        Check("vision.patch_embed", hooks.Cache["vision.embed"]);
        for (int b = 0; b < vl; b++) Check($"vision.block.{b}", hooks.Cache[$"vision.blocks.{b}.resid_post"]);
        Check("vision.merger_ln_q", hooks.Cache["vision.merger.ln_q"]);
        Check("vision.merger_out", hooks.Cache["vision.merger.out"]);
        Check("vision.image_embeds", hooks.Cache["projector.out"]);
        Check("lm.inputs_embeds", inputs.InputsEmbeds);
        CheckExact("lm.position_ids", inputs.PositionIds.data<long>().ToArray());
        CheckExact("lm.rope_deltas", inputs.RopeDeltas.data<long>().ToArray());

        var lm = Model.Model.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, hooks: hooks);
        Check("lm.hidden_states.0", hooks.Cache["text.blocks.0.resid_pre"]);
        for (int l = 0; l < tl; l++)
        {
            // transformers' last hidden state is the final-normed output; the others are raw layer outputs.
            Check($"lm.hidden_states.{l + 1}", l == tl - 1 ? lm.LastHiddenState : hooks.Cache[$"text.blocks.{l}.resid_post"]);
            Check($"lm.attn.{l}", hooks.Cache[$"text.blocks.{l}.attn.pattern"]);
        }
        Check("lm.last_layer_output", hooks.Cache[$"text.blocks.{tl - 1}.resid_post"]);
        Check("logits_last", Model.AnswerLogits(pixels, grid, ids, mask));

        foreach (var (t, d) in worst) output.WriteLine($"{name}.{t}: max abs diff {d:E2}");
    }

    /// <summary>
    /// Greedy generation (stops at &lt;|im_end|&gt;): the same ids, step logits and decode positions;
    /// and the min_new_tokens=10 run's step logits fed its stored ids (its later margins are too small
    /// to compare choices).
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void GenerationMatchesTransformers(string name)
    {
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var pixels = QwenTinyModel.PixelValues(reference, name);
        var grid = reference.Read($"{name}.image_grid_thw");
        var ids = reference.Read($"{name}.input_ids");
        var mask = reference.Read($"{name}.attention_mask");
        long b = ids.shape[0], t = ids.shape[1];

        using var generation = Model.Generate(pixels, grid, ids, mask, maxNewTokens: 10);
        var expectedIds = reference.Read($"{name}.generate.new_ids");
        Assert.Equal(expectedIds.data<long>().ToArray(), generation.NewIds.SelectMany(r => r).ToArray());
        double d = (reference.Read($"{name}.generate.step_logits") - generation.StepLogits).abs().max().item<float>();
        Assert.True(d <= Tolerance, $"generate.step_logits: max abs difference {d:E3}");

        var deltas = Model.PrepareInputs(pixels, grid, ids, mask).RopeDeltas;
        var decodePositions = reference.Read($"{name}.generate10.decode_position_ids");
        for (int k = 0; k < decodePositions.shape[0]; k++)
            Assert.Equal(decodePositions[k].data<long>().ToArray(), MultimodalRope.DecodePositions(deltas, t, k).data<long>().ToArray());

        var forcedIds = reference.Read($"{name}.generate10.new_ids");
        var rows = Enumerable.Range(0, (int)b).Select(r => forcedIds[r].data<long>().ToArray()).ToArray();
        using var forced = Model.TeacherForced(pixels, grid, ids, mask, rows);
        double d10 = (reference.Read($"{name}.generate10.step_logits") - forced.StepLogits).abs().max().item<float>();
        output.WriteLine($"{name}: generate step logits max abs diff {d:E2}, generate10 (teacher-forced) {d10:E2}");
        Assert.True(d10 <= Tolerance, $"generate10.step_logits: max abs difference {d10:E3}");

        // min_new_tokens=10 also gives the stored ids while the margins are clear (the first two steps).
        using var min10 = Model.Generate(pixels, grid, ids, mask, maxNewTokens: 2, minNewTokens: 10);
        for (int r = 0; r < b; r++) Assert.Equal(rows[r].Take(2), min10.NewIds[r]);
    }

    [Fact]
    public void AnswersLikeTheReference()
    {
        var c = QwenTinyModel.Case("case0");
        var answer = _vqa.Answer(Path.Combine(QwenTinyModel.Folder, "green_square.png"), c.GetProperty("questions")[0].GetString()!);
        Assert.Equal("green.", answer.Text);
        Assert.Equal(new long[] { 319, 13, 412 }, answer.Ids);
        Assert.Equal(448, answer.Logits.Length);

        var batch = _vqa.AnswerBatch(new[]
        {
            (Path.Combine(QwenTinyModel.Folder, "sad_face.png"), "Is the face happy or sad? Answer with one word."),
            (Path.Combine(QwenTinyModel.Folder, "blue_circle_tall.png"), "What color is the circle? Answer with one word."),
            (Path.Combine(QwenTinyModel.Folder, "black_square_small_gray.png"), "What color is the square? Answer with one word."),
        }, batchSize: 2);
        Assert.Equal(new[] { "sad.", "blue.", "black." }, batch);
    }

    /// <summary>The bfloat16 checkpoint streamed into bfloat16 (no float32 copy) still answers every case.</summary>
    [Fact]
    public void AnswersInBFloat16()
    {
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var model = Qwen25VlForConditionalGeneration.Load(QwenTinyModel.Folder, ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, model.DType);
        foreach (var name in new[] { "case0", "case3", "batch" })
        {
            var logits = model.AnswerLogits(QwenTinyModel.PixelValues(reference, name), reference.Read($"{name}.image_grid_thw"),
                reference.Read($"{name}.input_ids"), reference.Read($"{name}.attention_mask"));
            var expected = reference.Read($"{name}.logits_last");
            Assert.Equal(expected.argmax(-1).data<long>().ToArray(), logits.argmax(-1).data<long>().ToArray());
            output.WriteLine($"{name} in bfloat16: logits max abs diff {(expected - logits).abs().max().item<float>():E2}");
        }
    }

    [Fact]
    public void HookPointsHaveTheirShapesAndAddUp()
    {
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var hooks = new HookContext().RecordWhere(n => n.StartsWith("text."));
        Model.AnswerLogits(QwenTinyModel.PixelValues(reference, "batch"), reference.Read("batch.image_grid_thw"),
            reference.Read("batch.input_ids"), reference.Read("batch.attention_mask"), hooks);
        var c = Model.Config;
        Assert.Equal(new long[] { 2, 44, c.HiddenSize }, hooks.Cache["text.embed"].shape);
        Assert.Equal(new long[] { 2, 44, c.HiddenSize }, hooks.Cache["text.final_norm"].shape);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string b = $"text.blocks.{l}";
            Assert.Equal(new long[] { 2, 44, c.NumAttentionHeads, c.HeadDim }, hooks.Cache[$"{b}.attn.z"].shape);
            Assert.Equal(new long[] { 2, c.NumAttentionHeads, 44, 44 }, hooks.Cache[$"{b}.attn.pattern"].shape);
            var sum = hooks.Cache[$"{b}.resid_pre"] + hooks.Cache[$"{b}.attn.out"] + hooks.Cache[$"{b}.mlp.out"];
            Assert.True((sum - hooks.Cache[$"{b}.resid_post"]).abs().max().item<float>() < 1e-5);
        }
    }

    /// <summary>
    /// The causal fast path: layers from l up recompute only positions >= p against the cut KV cache,
    /// with the stored [3, B, T] position ids narrowed to those positions. It must give the full pass.
    /// </summary>
    [Theory]
    [InlineData("case0", 0, 0)]
    [InlineData("case0", 1, 20)]
    [InlineData("case3", 2, 34)]
    [InlineData("batch", 1, 10)]
    [InlineData("batch", 2, 43)]
    public void RecomputingFromALayerAndPositionMatchesTheFullPass(string name, int layer, int position)
    {
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var lm = Model.Model;
        var inputs = Model.PrepareInputs(QwenTinyModel.PixelValues(reference, name), reference.Read($"{name}.image_grid_thw"),
            reference.Read($"{name}.input_ids"), reference.Read($"{name}.attention_mask"));
        using var hooks = new HookContext().Record($"text.blocks.{layer}.resid_pre");
        var full = lm.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, hooks: hooks, useCache: true);

        long t = inputs.InputsEmbeds.shape[1], rest = t - position;
        var past = full.Cache!.Select(kv => kv.Narrow(position)).ToList();
        var hidden = hooks.Cache[$"text.blocks.{layer}.resid_pre"].narrow(1, position, rest);
        var fast = lm.Forward(hidden, inputs.PositionIds.narrow(2, position, rest), inputs.AttentionMask, past, fromLayer: layer);

        double d = (fast.LastHiddenState - full.LastHiddenState.narrow(1, position, rest)).abs().max().item<float>();
        output.WriteLine($"{name} from layer {layer}, position {position}: max abs diff {d:E2}");
        Assert.True(d < 1e-5, $"max abs difference {d:E3}");
    }

    /// <summary>One corrupt run's one-row cache serves a batch of restarted rows (one per patch).</summary>
    [Fact]
    public void AOneRowCacheServesABatchOfRestartedRows()
    {
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var lm = Model.Model;
        var inputs = Model.PrepareInputs(QwenTinyModel.PixelValues(reference, "case0"), reference.Read("case0.image_grid_thw"),
            reference.Read("case0.input_ids"), reference.Read("case0.attention_mask"));
        const int layer = 1, position = 30, rows = 3;
        using var hooks = new HookContext().Record($"text.blocks.{layer}.resid_pre");
        var full = lm.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, hooks: hooks, useCache: true);

        long rest = inputs.InputsEmbeds.shape[1] - position;
        var past = full.Cache!.Select(kv => kv.Narrow(position)).ToList();
        var hidden = hooks.Cache[$"text.blocks.{layer}.resid_pre"].narrow(1, position, rest).expand(rows, -1, -1);
        var positions = inputs.PositionIds.narrow(2, position, rest).expand(3, rows, -1);
        var fast = lm.Forward(hidden, positions, inputs.AttentionMask.expand(rows, -1), past, fromLayer: layer);
        var expected = full.LastHiddenState.narrow(1, position, rest).expand(rows, -1, -1);
        Assert.True((fast.LastHiddenState - expected).abs().max().item<float>() < 1e-5);
    }
}

/// <summary>The qwen25vl-tiny fixture, loaded once for every test that reads it.</summary>
public static class QwenTinyModel
{
    public static string Folder => Path.Combine(Fixtures.Root, "tests", "fixtures", "qwen25vl-tiny");
    public static string Reference => Path.Combine(Folder, "reference.safetensors");

    private static readonly Lazy<Qwen25VlVqa> Bundle = new(() => Qwen25VlVqa.Load(Folder));
    public static Qwen25VlVqa Vqa => Bundle.Value;

    private static readonly Lazy<JsonDocument> ReferenceJson = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder, "reference.json"))));
    public static JsonDocument Json => ReferenceJson.Value;

    public static JsonElement Case(string name) =>
        Json.RootElement.GetProperty("cases").EnumerateArray().First(c => c.GetProperty("name").GetString() == name);

    /// <summary>A case's pixel_values: its images' stored pixel values, concatenated.</summary>
    public static Tensor PixelValues(SafeTensorsFile reference, string name) =>
        torch.cat(Case(name).GetProperty("images").EnumerateArray().Select(e => reference.Read($"image.{e.GetString()}.pixel_values")).ToArray(), 0);
}
