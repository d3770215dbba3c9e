using System.CommandLine;
using System.Text.Json;
using Notice.Vlm;

namespace Notice.Cli.Commands;

/// <summary>notice answer: one question about one image, greedy, as transformers' generate (BLIP or
/// LLaVA, from the model folder's config.json).</summary>
public static class AnswerCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder (Hugging Face format, BLIP or LLaVA)", DefaultValueFactory = _ => Defaults.Model };
        var image = new Option<string>("--image") { Description = "image file (PNG or JPEG)", Required = true };
        var question = new Option<string>("--question") { Description = "the question (LLaVA: put in the llava-1.5 template)", Required = true };
        var json = new Option<bool>("--json") { Description = "print answer text, answer ids and the full logits of the first answer token as JSON" };
        var dtype = DTypeOption();
        var cmd = new Command("answer", "answer a question about an image") { model, image, question, json, dtype };
        cmd.SetAction(pr =>
        {
            using var vlm = VlmModel.Load(pr.GetValue(model)!, VlmModel.ParseDType(pr.GetValue(dtype)!));
            var answer = vlm.Answer(pr.GetValue(image)!, pr.GetValue(question)!);
            Console.WriteLine(pr.GetValue(json) ? Json(vlm.Architecture, answer) : answer.Text);
            return 0;
        });
        return cmd;
    }

    /// <summary>--dtype, shared by the commands that load a model.</summary>
    internal static Option<string> DTypeOption() =>
        new("--dtype") { Description = "float32, float16 or bfloat16: the dtype the model runs in (float32 on CPU)", DefaultValueFactory = _ => "float32" };

    /// <summary>The --json document. The logits are named for where they are read: BLIP's decoder
    /// first step, LLaVA's last prompt position.</summary>
    public static string Json(VlmArchitecture architecture, VlmAnswer answer)
    {
        var doc = new Dictionary<string, object>
        {
            ["answer"] = answer.Text,
            ["answer_ids"] = answer.Ids,
            [architecture == VlmArchitecture.Llava ? "last_position_logits" : "first_step_logits"] = answer.Logits,
        };
        return JsonSerializer.Serialize(doc);
    }
}
