namespace Notice.Core.Tasks;

/// <summary>
/// Semantic text replacement (STR), the text-side corruption: the clean prompt with both options
/// swapped for the options of another sample of the same task and category ("Is the man walking or
/// running?" becomes "Is the man eating or sleeping?"). The new options have the same tokenized
/// length as the ones they replace, so clean and corrupt prompts align token by token and a patch
/// at position p means the same thing in both runs; they are never equal to, or a near-synonym of,
/// either clean option, so the corrupt prompt no longer offers the answer.
/// </summary>
public static class StrCorruption
{
    // Random picks tried before scanning a whole bucket: buckets are large and conflicts rare.
    private const int RandomTries = 16;

    /// <summary>
    /// Returns the records with <see cref="PairRecord.CorruptPrompt"/> filled where it was null, in
    /// the same order. A record keeps a null corrupt prompt when its prompt does not name its options
    /// as "A or B" or no other sample has options of the right lengths; callers drop or report those.
    /// Deterministic: each record's choice depends only on the seed, its id and the set of records.
    /// </summary>
    public static IReadOnlyList<PairRecord> Assign(
        IReadOnlyList<PairRecord> records, Func<string, int>? tokenCount = null, NearSynonyms? synonyms = null, int seed = 0)
    {
        tokenCount ??= TokenCount.OnePerWord;
        synonyms ??= NearSynonyms.None;

        var slots = new OptionSlots?[records.Count];
        var pool = new Dictionary<(string Task, string Category, int First, int Second), List<(string, string)>>();
        var seen = new HashSet<(string, string, string, string)>();
        for (var i = 0; i < records.Count; i++)
        {
            var r = records[i];
            if (!OptionSlots.TryFind(r.Prompt, r.Answer, r.WrongAnswer, out var s)) continue;
            slots[i] = s;
            int la = TokenCount.Of(s.First, tokenCount), lb = TokenCount.Of(s.Second, tokenCount);
            // Either orientation of another sample's options is a valid replacement.
            Add(r, s.First, s.Second, la, lb);
            Add(r, s.Second, s.First, lb, la);
        }

        void Add(PairRecord r, string x, string y, int lx, int ly)
        {
            if (!seen.Add((r.Task, r.Category, x.ToLowerInvariant(), y.ToLowerInvariant()))) return;
            var key = (r.Task, r.Category, lx, ly);
            if (!pool.TryGetValue(key, out var list)) pool[key] = list = [];
            list.Add((x, y));
        }

        var result = new PairRecord[records.Count];
        for (var i = 0; i < records.Count; i++)
        {
            var r = records[i];
            result[i] = r;
            if (r.CorruptPrompt is not null || slots[i] is not { } s) continue;
            var key = (r.Task, r.Category, TokenCount.Of(s.First, tokenCount), TokenCount.Of(s.Second, tokenCount));
            if (!pool.TryGetValue(key, out var bucket)) continue;

            var rng = StableSeed.Random(seed, r.Id);
            bool Allowed((string X, string Y) c) =>
                !synonyms.AreNear(c.X, s.First) && !synonyms.AreNear(c.X, s.Second) &&
                !synonyms.AreNear(c.Y, s.First) && !synonyms.AreNear(c.Y, s.Second);

            (string X, string Y)? pick = null;
            for (var t = 0; t < RandomTries && pick is null; t++)
            {
                var c = bucket[rng.Next(bucket.Count)];
                if (Allowed(c)) pick = c;
            }
            if (pick is null)
            {
                var allowed = bucket.Where(Allowed).ToList();
                if (allowed.Count > 0) pick = allowed[rng.Next(allowed.Count)];
            }
            if (pick is { } p) result[i] = r with { CorruptPrompt = s.Replace(r.Prompt, p.X, p.Y) };
        }
        return result;
    }
}
