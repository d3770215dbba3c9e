using System.Text.Json;
using Notice.Vlm.Checkpoints;
using Notice.Vlm.Hooks;
using Notice.Vlm.Qwen25Vl;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Notice.Tests;

/// <summary>
/// The hook points are the sites of tests/fixtures/qwen25vl-tiny/notice_patching.*: patching one
/// value through <see cref="HookContext.Patch"/> (plain full recompute of the corrupt run) gives
/// every score of the stored tables. "layer" = text.blocks.{l}.resid_post, "attention_block" =
/// .attn.out, "mlp_block" = .mlp.out, "attention_block.head{h}" = head h of .attn.z. This checks
/// the hook points, not a patching engine (which is not part of the Qwen port).
/// </summary>
public sealed class Qwen25VlHookPatchingTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;

    [Theory]
    [InlineData("colors.image")]
    [InlineData("yesno.text")]
    public void HookPatchingReproducesTheStoredTables(string key)
    {
        var model = QwenTinyModel.Vqa.Model;
        using var tables = SafeTensorsFile.Open(Path.Combine(QwenTinyModel.Folder, "notice_patching.safetensors"));
        using var reference = SafeTensorsFile.Open(QwenTinyModel.Reference);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(QwenTinyModel.Folder, "notice_patching.json")));
        var sample = json.RootElement.GetProperty("samples").EnumerateArray().First(s => s.GetProperty("key").GetString() == key);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();

        QwenInputs Inputs(string run) => model.PrepareInputs(
            reference.Read($"image.{sample.GetProperty($"{run}_image").GetString()}.pixel_values"),
            tables.Read($"{key}.inputs.{run}.image_grid_thw"), tables.Read($"{key}.inputs.{run}.input_ids"), tables.Read($"{key}.inputs.{run}.attention_mask"));
        Tensor LastLogits(QwenInputs inputs, HookContext? hooks) =>
            model.Logits(model.Model.Forward(inputs.InputsEmbeds, inputs.PositionIds, inputs.AttentionMask, hooks: hooks).LastHiddenState.select(1, -1))[0];

        var clean = Inputs("clean");
        var corrupt = Inputs("corrupt");
        using var recorded = new HookContext().RecordWhere(n => n.StartsWith("text.blocks."));
        var cleanLogits = LastLogits(clean, recorded);
        var corruptLogits = LastLogits(corrupt, null);
        var baseline = tables.Read($"{key}.baseline.logits");
        Assert.True((baseline[0] - cleanLogits).abs().max().item<float>() < Tolerance);
        Assert.True((baseline[1] - corruptLogits).abs().max().item<float>() < Tolerance);

        var answers = tables.Read($"{key}.answer_tokens").data<long>().ToArray();
        long c = answers[0], i = answers[1];
        float Diff(Tensor z) => z[c].item<float>() - z[i].item<float>();
        float pCorrupt = corruptLogits.softmax(-1)[c].item<float>();
        float diffClean = Diff(cleanLogits), diffCorrupt = Diff(corruptLogits);
        float[] Scores(Tensor z)
        {
            float p = z.softmax(-1)[c].item<float>(), logitDiff = Diff(z) - diffCorrupt;
            return [p, p - pCorrupt, logitDiff, logitDiff / (diffClean - diffCorrupt)];
        }

        double worst = 0;
        int units = 0;
        void Compare(string table, int row, int layer, string hook, long position, long? head)
        {
            var value = recorded.Cache[hook][0][position];
            if (head is { } h) value = value[h];
            using var hooks = new HookContext().Patch(hook, [0], [position], head is null ? null : [head.Value], value.unsqueeze(0));
            var scores = Scores(LastLogits(corrupt, hooks));
            var expected = tables.Read($"{key}.{table}.scores")[row][layer].data<float>().ToArray();
            for (int m = 0; m < 4; m++)
            {
                double d = Math.Abs(expected[m] - scores[m]);
                worst = Math.Max(worst, d);
                Assert.True(d <= Tolerance, $"{key}.{table}[{row}, {layer}] metric {m}: {scores[m]} vs {expected[m]}");
            }
            units++;
        }

        var positions = tables.Read($"{key}.module_wise_positions").data<long>().ToArray();
        int layers = model.Config.NumHiddenLayers;
        for (int l = 0; l < layers; l++)
        {
            for (int r = 0; r < positions.Length; r++)
            {
                Compare("layer.corrected", r, l, $"text.blocks.{l}.resid_post", positions[r], null);
                Compare("attention_block.corrected", r, l, $"text.blocks.{l}.attn.out", positions[r], null);
                Compare("mlp_block.corrected", r, l, $"text.blocks.{l}.mlp.out", positions[r], null);
            }
            for (int h = 0; h < model.Config.NumAttentionHeads; h++)
            {
                Compare($"attention_block.head{h}.corrected", 0, l, $"text.blocks.{l}.attn.z", sample.GetProperty("answer_word_position").GetInt64(), h);
                Compare($"attention_block.head{h}.lastpos", 0, l, $"text.blocks.{l}.attn.z", sample.GetProperty("last_position").GetInt64(), h);
            }
        }
        output.WriteLine($"{key}: {units} units, worst metric difference {worst:E2}");
    }
}
