using Notice.Core.Tasks;

namespace Notice.Tests;

public sealed class SampleSelectorTests
{
    private static PairRecord Rec(int i, string task, string category, string answer, string wrong, bool answerFirst) => new()
    {
        Id = $"{task}-{i:D3}", Task = task, Category = category, Image = $"img/{i}.png", CorruptImage = $"img/{i}-c.png",
        Prompt = answerFirst ? $"Is the shape {answer} or {wrong}?" : $"Is the shape {wrong} or {answer}?",
        CorruptPrompt = answerFirst ? "Is the shape pink or gray?" : "Is the shape gray or pink?",
        Answer = answer, WrongAnswer = wrong,
    };

    private static List<PairRecord> Records() =>
    [
        .. Enumerable.Range(0, 40).Select(i => Rec(i, "t1", i % 4 == 0 ? "rare" : "common", "red", "blue", answerFirst: true)),
        .. Enumerable.Range(0, 10).Select(i => Rec(100 + i, "t2", "x", "big", "small", answerFirst: false)),
    ];

    /// <summary>A model that answers right except for samples whose id ends in 7.</summary>
    private static IReadOnlyList<string> Answers(IReadOnlyList<PairRecord> rs) =>
        rs.Select(r => r.Id.EndsWith('7') ? r.WrongAnswer : r.Answer.ToUpperInvariant() + " ").ToList();

    [Fact]
    public void KeepsOnlyExactMatchesAndCountsAccuracy()
    {
        var result = SampleSelector.Select(Records(), Answers, perTask: 100, seed: 3);
        Assert.DoesNotContain(result.Selected, r => r.Id.EndsWith('7'));
        Assert.Equal(36 + 9, result.Selected.Count);
        var common = result.Accuracy.Single(a => a.Task == "t1" && a.Category == "common");
        Assert.Equal(30, common.Samples);
        Assert.Equal(26, common.Correct);   // ids 7, 17, 27, 37 are wrong; all four are "common"
        Assert.Equal(10, result.Accuracy.Single(a => a.Task == "t1" && a.Category == "rare").Correct);
    }

    [Fact]
    public void BalancesCategoriesAndAnswerOrder()
    {
        var result = SampleSelector.Select(Records(), Answers, perTask: 20, seed: 1);
        var t1 = result.Selected.Where(r => r.Task == "t1").ToList();
        Assert.Equal(20, t1.Count);
        Assert.Equal(10, t1.Count(r => r.Category == "rare"));
        Assert.Equal(10, t1.Count(r => r.Category == "common"));
        Assert.InRange(t1.Count(SampleSelector.CorrectFirst), 9, 11);
        var t2 = result.Selected.Where(r => r.Task == "t2").ToList();
        Assert.InRange(t2.Count(SampleSelector.CorrectFirst), 4, 5);
    }

    [Fact]
    public void SwappedPromptsSwapTheCorruptOptionsToo()
    {
        var r = Rec(1, "t", "c", "red", "blue", answerFirst: true);
        var swapped = SampleSelector.WithCorrectFirst(r, correctFirst: false)!;
        Assert.Equal("Is the shape blue or red?", swapped.Prompt);
        Assert.Equal("Is the shape gray or pink?", swapped.CorruptPrompt);
        Assert.Same(r, SampleSelector.WithCorrectFirst(r, correctFirst: true));
    }

    [Fact]
    public void SelectionIsSeeded()
    {
        var a = SampleSelector.Select(Records(), Answers, perTask: 10, seed: 5).Selected.Select(r => r.Id + r.Prompt);
        var b = SampleSelector.Select(Records(), Answers, perTask: 10, seed: 5).Selected.Select(r => r.Id + r.Prompt);
        Assert.Equal(a, b);
    }
}
