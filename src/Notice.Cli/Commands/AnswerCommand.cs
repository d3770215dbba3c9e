using Notice.Core;
using System.CommandLine;
using System.Text.Json;
using Notice.Core.Families;
using Notice.Vlm;

namespace Notice.Cli.Commands;

/// <summary>notice answer: one question about one image, greedy, as transformers' generate (BLIP or
/// LLaVA, from the model folder's config.json).</summary>
public static class AnswerCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder (Hugging Face format, BLIP or LLaVA)", DefaultValueFactory = _ => RepoPaths.BuiltInModel };
        var image = new Option<string>("--image") { Description = "image file (PNG or JPEG)", Required = true };
        var question = new Option<string>("--question") { Description = "the question (LLaVA: put in the llava-1.5 template)", Required = true };
        var json = new Option<bool>("--json") { Description = "print answer text, answer ids and the full logits of the first answer token as JSON" };
        var dtype = DTypeOption();
        var cmd = new Command("answer", "answer a question about an image") { model, image, question, json, dtype };
        cmd.SetAction(pr =>
        {
            var family = ModelFamilies.Of(pr.GetValue(model)!);
            using var vlm = family.LoadModel(pr.GetValue(model)!, VlmModel.ParseDType(pr.GetValue(dtype)!));
            var answer = vlm.Answer(pr.GetValue(image)!, pr.GetValue(question)!);
            Console.WriteLine(pr.GetValue(json) ? Json(family, answer) : answer.Text);
            return 0;
        });
        return cmd;
    }

    /// <summary>--dtype, shared by the commands that load a model.</summary>
    internal static Option<string> DTypeOption() =>
        new("--dtype") { Description = "float32, float16 or bfloat16: the dtype the model runs in (float32 on CPU)", DefaultValueFactory = _ => "float32" };

    /// <summary>The --json document. The logits are named for where the family reads them (BLIP's
    /// decoder first step, LLaVA's last prompt position).</summary>
    public static string Json(ModelFamily family, VlmAnswer answer)
    {
        var doc = new Dictionary<string, object>
        {
            ["answer"] = answer.Text,
            ["answer_ids"] = answer.Ids,
            [family.AnswerLogitsName] = answer.Logits,
        };
        return JsonSerializer.Serialize(doc);
    }
}
