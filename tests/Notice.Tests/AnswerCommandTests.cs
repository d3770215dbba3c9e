using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Notice.Cli.Commands;
using Notice.Vlm.Checkpoints;

namespace Notice.Tests;

/// <summary>`notice answer` on the fixture checkpoint prints the reference answers of transformers' generate.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class AnswerCommandTests
{
    private static (int Code, string Out) Run(params string[] args)
    {
        var (code, output, _) = CliRun.RunAsync(AnswerCommand.Create(), args).GetAwaiter().GetResult();
        return (code, output);
    }

    public static TheoryData<string> Cases => new() { "case0", "case1", "case2", "case3", "case4", "case5" };

    [Theory]
    [MemberData(nameof(Cases))]
    public void PrintsTheReferenceAnswer(string name)
    {
        var reference = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.BlipTiny, "reference.json")))!["cases"]!.AsArray()
            .Single(c => c!["name"]!.GetValue<string>() == name)!;
        var image = Path.Combine(Fixtures.BlipTiny, reference["images"]![0]!.GetValue<string>());
        var question = reference["questions"]![0]!.GetValue<string>();
        var (code, output) = Run("answer", "--model", Fixtures.BlipTiny, "--image", image, "--question", question);
        Assert.Equal(0, code);
        Assert.Equal(reference["generate_text"]![0]!.GetValue<string>(), output.Trim());

        var (_, json) = Run("answer", "--model", Fixtures.BlipTiny, "--image", image, "--question", question, "--json");
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(reference["generate_text"]![0]!.GetValue<string>(), doc.RootElement.GetProperty("answer").GetString());
        Assert.Equal(reference["generate_ids"]![0]!.AsArray().Select(i => i!.GetValue<long>()), doc.RootElement.GetProperty("answer_ids").EnumerateArray().Select(e => e.GetInt64()));
        var logits = doc.RootElement.GetProperty("first_step_logits").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        using var f = SafeTensorsFile.Open(Path.Combine(Fixtures.BlipTiny, "reference.safetensors"));
        var expected = f.Read($"{name}.decoder.logits_step0")[0].data<float>().ToArray();
        Assert.Equal(expected.Length, logits.Length);
        Assert.True(expected.Zip(logits).Max(p => Math.Abs(p.First - p.Second)) < 1e-4);
    }
}
