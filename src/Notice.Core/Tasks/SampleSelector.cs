namespace Notice.Core.Tasks;

/// <summary>How often the model answered a task's (and category's) clean questions exactly right.</summary>
public sealed record AccuracyRow(string Task, string Category, int Samples, int Correct)
{
    public double Accuracy => Samples == 0 ? 0 : (double)Correct / Samples;
}

public sealed record SelectionResult(IReadOnlyList<PairRecord> Selected, IReadOnlyList<AccuracyRow> Accuracy);

/// <summary>
/// Picks the samples a model answers exactly right on the clean input (exact match, as the paper),
/// balanced over categories within each task, with the correct option first in half of them and
/// second in the other half. Which order a sample is asked in is decided (seeded) before the model
/// answers, so every kept sample was answered right in the order it is kept in.
/// </summary>
public static class SampleSelector
{
    /// <param name="answer">the model's answers to the clean (image, prompt) of each record, in order</param>
    public static SelectionResult Select(IReadOnlyList<PairRecord> records, Func<IReadOnlyList<PairRecord>, IReadOnlyList<string>> answer, int perTask, int seed = 0)
    {
        var rng = new Random(seed);
        // Shuffle, then alternate the wanted order within each task.
        var shuffled = records.OrderBy(_ => rng.Next()).ToList();
        var ordered = new List<PairRecord>(shuffled.Count);
        var counter = new Dictionary<string, int>();
        foreach (var r in shuffled)
        {
            int k = counter.GetValueOrDefault(r.Task);
            counter[r.Task] = k + 1;
            ordered.Add(WithCorrectFirst(r, k % 2 == 0) ?? r);
        }
        var answers = answer(ordered);
        if (answers.Count != ordered.Count) throw new InvalidOperationException("the answerer returned a different number of answers");
        var correct = ordered.Where((r, i) => IsExactMatch(answers[i], r.Answer)).ToList();
        var accuracy = ordered.Select((r, i) => (r, ok: IsExactMatch(answers[i], r.Answer)))
            .GroupBy(x => (x.r.Task, x.r.Category))
            .OrderBy(g => g.Key.Task, StringComparer.Ordinal).ThenBy(g => g.Key.Category, StringComparer.Ordinal)
            .Select(g => new AccuracyRow(g.Key.Task, g.Key.Category, g.Count(), g.Count(x => x.ok)))
            .ToList();
        var selected = new List<PairRecord>();
        foreach (var task in correct.GroupBy(r => r.Task).OrderBy(g => g.Key, StringComparer.Ordinal))
            selected.AddRange(Balanced(task.ToList(), perTask));
        return new SelectionResult(selected, accuracy);
    }

    /// <summary>Round robin over categories, and within each category over the two answer orders, so
    /// neither dominates while there are samples of each.</summary>
    private static IEnumerable<PairRecord> Balanced(List<PairRecord> samples, int limit)
    {
        var queues = samples.GroupBy(r => r.Category).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => new Queue<PairRecord>(Interleave(g.Where(CorrectFirst).ToList(), g.Where(r => !CorrectFirst(r)).ToList())))
            .ToList();
        int taken = 0;
        while (taken < limit && queues.Any(q => q.Count > 0))
            foreach (var q in queues)
            {
                if (taken >= limit) break;
                if (q.TryDequeue(out var r)) { taken++; yield return r; }
            }
    }

    private static IEnumerable<T> Interleave<T>(List<T> a, List<T> b)
    {
        for (int i = 0; i < Math.Max(a.Count, b.Count); i++)
        {
            if (i < a.Count) yield return a[i];
            if (i < b.Count) yield return b[i];
        }
    }

    /// <summary>Exact match, ignoring case, surrounding space and one sentence-final period: LLaVA
    /// answers "Answer in one word." with "Red." (BLIP answers carry no punctuation).</summary>
    public static bool IsExactMatch(string answer, string expected) =>
        string.Equals(Normalize(answer), Normalize(expected), StringComparison.OrdinalIgnoreCase);

    private static string Normalize(string text)
    {
        var t = text.Trim();
        return t.EndsWith('.') ? t[..^1].TrimEnd() : t;
    }

    /// <summary>True when the prompt names the correct option before the wrong one.</summary>
    public static bool CorrectFirst(PairRecord r) =>
        OptionSlots.TryFind(r.Prompt, r.Answer, r.WrongAnswer, out var s) && string.Equals(s.First, r.Answer, StringComparison.OrdinalIgnoreCase);

    /// <summary>The record asked with the correct option first (or second); its corrupt prompt's
    /// options are swapped the same way so token positions still align. Null when the prompt's
    /// options cannot be found.</summary>
    public static PairRecord? WithCorrectFirst(PairRecord r, bool correctFirst)
    {
        if (!OptionSlots.TryFind(r.Prompt, r.Answer, r.WrongAnswer, out var slots)) return null;
        bool isFirst = string.Equals(slots.First, r.Answer, StringComparison.OrdinalIgnoreCase);
        if (isFirst == correctFirst) return r;
        var prompt = slots.Replace(r.Prompt, slots.Second, slots.First);
        var corrupt = r.CorruptPrompt is null ? null : SwapCorrupt(r.Prompt, slots, r.CorruptPrompt);
        if (r.CorruptPrompt is not null && corrupt is null) return null;
        return r with { Prompt = prompt, CorruptPrompt = corrupt };
    }

    /// <summary>The corrupt prompt shares the clean prompt's template: same text before the first
    /// option, between the options and after the second. Swap its two options.</summary>
    private static string? SwapCorrupt(string clean, OptionSlots slots, string corrupt)
    {
        var prefix = clean[..slots.FirstStart];
        var middle = clean[(slots.FirstStart + slots.First.Length)..slots.SecondStart];
        var suffix = clean[(slots.SecondStart + slots.Second.Length)..];
        if (!corrupt.StartsWith(prefix, StringComparison.Ordinal) || !corrupt.EndsWith(suffix, StringComparison.Ordinal)) return null;
        var options = corrupt[prefix.Length..(corrupt.Length - suffix.Length)];
        int m = options.IndexOf(middle, StringComparison.Ordinal);
        if (m <= 0) return null;
        var first = options[..m];
        var second = options[(m + middle.Length)..];
        var corruptSlots = new OptionSlots(prefix.Length, first, prefix.Length + m + middle.Length, second);
        return corruptSlots.Replace(corrupt, second, first);
    }
}
