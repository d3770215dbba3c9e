using System.CommandLine;
using System.Text.Json;
using Notice.Vlm.Blip;

namespace Notice.Cli.Commands;

/// <summary>notice answer: one question about one image, greedy, as transformers' generate.</summary>
public static class AnswerCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder (Hugging Face format)", DefaultValueFactory = _ => Defaults.Model };
        var image = new Option<string>("--image") { Description = "image file (PNG or JPEG)", Required = true };
        var question = new Option<string>("--question") { Description = "the question", Required = true };
        var json = new Option<bool>("--json") { Description = "print answer text, answer ids and the full first-step logits as JSON" };
        var cmd = new Command("answer", "answer a question about an image") { model, image, question, json };
        cmd.SetAction(pr =>
        {
            using var vqa = BlipVqa.Load(pr.GetValue(model)!);
            var answer = vqa.Answer(pr.GetValue(image)!, pr.GetValue(question)!);
            if (pr.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    answer = answer.Text,
                    answer_ids = answer.Ids,
                    first_step_logits = answer.FirstStepLogits,
                }));
            }
            else
            {
                Console.WriteLine(answer.Text);
            }
            return 0;
        });
        return cmd;
    }
}
