namespace Notice.Core.Tasks;

/// <summary>The last step every dataset preparer shares: STR prompts, then the manifest.</summary>
internal static class TaskOutput
{
    /// <summary>
    /// Fills corrupt prompts, drops (and counts) the records that got none, writes
    /// <c>pairs.jsonl</c> into <paramref name="outputDir"/> and completes the report.
    /// </summary>
    public static TaskReport Finish(
        List<PairRecord> records, TaskReport report, string outputDir, Func<string, int> tokenCount, NearSynonyms synonyms, int seed)
    {
        var withStr = StrCorruption.Assign(records, tokenCount, synonyms, seed);
        var kept = new List<PairRecord>(withStr.Count);
        foreach (var r in withStr)
        {
            if (r.CorruptPrompt is null)
                report.Skip(SkipReason.NoStrOptions, $"{r.Id}: no other {r.Category} options of the same token lengths as '{r.Answer}' / '{r.WrongAnswer}'");
            else
                kept.Add(r);
        }
        var manifest = Path.GetFullPath(Path.Combine(outputDir, PairsManifest.DefaultFileName));
        PairsManifest.Write(manifest, kept);
        report.ManifestPath = manifest;
        report.Written = kept.Count;
        return report;
    }
}
