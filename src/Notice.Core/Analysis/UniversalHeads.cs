namespace Notice.Core.Analysis;

/// <summary>
/// The universal heads of one model and head site (the paper's Table 1): heads important in every
/// task under one corruption. Vision heads: under image corruption (SIP); text heads: under text
/// corruption (STR); multimodal heads: universal under both, so they appear in all three lists.
/// </summary>
/// <param name="VisionTasks">the tasks with an image-corruption table for this site: "every task" for vision heads</param>
/// <param name="TextTasks">the tasks with a text-corruption table for this site: "every task" for text heads</param>
public sealed record UniversalHeadSet(
    string Model,
    string Site,
    IReadOnlyList<string> VisionTasks,
    IReadOnlyList<string> TextTasks,
    IReadOnlyList<HeadId> Vision,
    IReadOnlyList<HeadId> Text,
    IReadOnlyList<HeadId> Multimodal);

/// <summary>Finds universal heads in head tables (see <see cref="HeadTable"/> for "important").</summary>
public static class UniversalHeads
{
    public const string ImageMode = "image";
    public const string TextMode = "text";

    /// <summary>
    /// One set per (model, head site). A head is universal under a mode when it is important in
    /// that mode's table of every task that has one; with no such table the list is empty. Noise
    /// tables are a baseline, not a modality, and take no part.
    /// </summary>
    public static IReadOnlyList<UniversalHeadSet> Find(IEnumerable<HeadTable> tables) =>
        tables.GroupBy(t => (t.Model, t.Site))
              .OrderBy(g => g.Key.Model, StringComparer.Ordinal)
              .ThenBy(g => AnalysisOrder.Site(g.Key.Site)).ThenBy(g => g.Key.Site, StringComparer.Ordinal)
              .Select(g =>
              {
                  var (visionTasks, vision) = ImportantInEveryTask(g, ImageMode);
                  var (textTasks, text) = ImportantInEveryTask(g, TextMode);
                  return new UniversalHeadSet(g.Key.Model, g.Key.Site, visionTasks, textTasks, vision, text, vision.Intersect(text).Order().ToList());
              })
              .ToList();

    private static (IReadOnlyList<string> Tasks, IReadOnlyList<HeadId> Heads) ImportantInEveryTask(IEnumerable<HeadTable> tables, string mode)
    {
        var inMode = tables.Where(t => t.Mode == mode).OrderBy(t => t.Task, StringComparer.Ordinal).ToList();
        if (inMode.Count == 0) return ([], []);
        IEnumerable<HeadId> heads = inMode[0].Important;
        foreach (var t in inMode.Skip(1)) heads = heads.Intersect(t.Important);
        return (inMode.Select(t => t.Task).ToList(), heads.Order().ToList());
    }
}
