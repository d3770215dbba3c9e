using Notice.Vlm.Blip;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Hooks;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>
/// BLIP-VQA against transformers 4.41 (tests/fixtures/blip-tiny/reference.safetensors): fed the
/// reference pixel values and ids, every internal tensor within 1e-4 in float32.
/// </summary>
public sealed class BlipParityTests(ITestOutputHelper output) : IClassFixture<BlipTinyModel>
{
    private const double Tolerance = 1e-4;
    private readonly BlipForQuestionAnswering _model = BlipTinyModel.Shared;

    public static TheoryData<string> Cases => new() { "case0", "case1", "case2", "case3", "case4", "case5", "batch", "batch_nomask" };

    [Theory]
    [MemberData(nameof(Cases))]
    public void InternalsMatchTransformers(string name)
    {
        using var reference = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "reference.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var pixels = reference.Read($"{name}.pixel_values");
        var ids = reference.Read($"{name}.input_ids");
        var mask = name == "batch_nomask" ? null : reference.Read($"{name}.attention_mask");
        int vl = _model.Config.Vision.NumHiddenLayers, tl = _model.Config.Text.NumHiddenLayers;

        using var hooks = new HookContext().RecordWhere(n => HookName.IsResidPost(n, stack: null) || HookName.IsPattern(n, stack: null) || HookName.TryParse(n, out var p) && p.Point == "embed");
        var image = _model.EncodeImage(pixels, hooks);
        var kv = _model.TextEncoder.CrossKeysValues(image);
        var question = _model.EncodeQuestion(ids, mask, kv, hooks);
        var logits = _model.FirstStepLogits(question, hooks);

        var worst = new List<(string, double)>();
        void Check(string refName, Tensor actual)
        {
            var expected = reference.Read($"{name}.{refName}");
            Assert.Equal(expected.shape, actual.shape);
            double d = (expected - actual).abs().max().item<float>();
            worst.Add((refName, d));
            Assert.True(d <= Tolerance, $"{name}.{refName}: max abs difference {d:E3} > {Tolerance:E0}");
        }
        Check("vision.hidden_states.0", hooks.Cache[HookName.Embed(HookName.Vision)]);
        for (int l = 0; l < vl; l++)
        {
            Check($"vision.hidden_states.{l + 1}", hooks.Cache[HookName.ResidPost(l, HookName.Vision)]);
            Check($"vision.attn.{l}", hooks.Cache[HookName.AttnPattern(l, HookName.Vision)]);
        }
        Check("vision.last_hidden_state", image);
        Check("text.hidden_states.0", hooks.Cache[HookName.Embed()]);
        for (int l = 0; l < tl; l++)
        {
            Check($"text.hidden_states.{l + 1}", hooks.Cache[HookName.ResidPost(l)]);
            Check($"text.self_attn.{l}", hooks.Cache[HookName.AttnPattern(l)]);
            Check($"text.cross_attn.{l}", hooks.Cache[HookName.CrossPattern(l)]);
            Check($"decoder.hidden_states.{l + 1}", hooks.Cache[HookName.ResidPost(l, HookName.Decoder)]);
            Check($"decoder.self_attn.{l}", hooks.Cache[HookName.AttnPattern(l, HookName.Decoder)]);
            Check($"decoder.cross_attn.{l}", hooks.Cache[HookName.CrossPattern(l, HookName.Decoder)]);
        }
        Check("decoder.hidden_states.0", hooks.Cache[HookName.Embed(HookName.Decoder)]);
        Check("decoder.logits_step0", logits);

        var generated = _model.Generate(pixels, ids, mask);
        var expectedIds = reference.Read($"{name}.generate.ids");
        for (int r = 0; r < generated.Length; r++)
            Assert.Equal(expectedIds[r].data<long>().ToArray(), generated[r]);

        foreach (var (t, d) in worst) output.WriteLine($"{name}.{t}: max abs diff {d:E2}");
    }
}

/// <summary>The fixture checkpoint, loaded once per test class.</summary>
public sealed class BlipTinyModel
{
    private static readonly Lazy<BlipForQuestionAnswering> Model = new(() => BlipForQuestionAnswering.Load(Fixtures.BlipTiny));
    public static BlipForQuestionAnswering Shared => Model.Value;
}
