using Notice.Core.Patching;

namespace Notice.Core.Analysis;

/// <summary>The order tables and figures list sites and modes in: the order the README and the
/// paper introduce them (MLP, self-attention, cross-attention; image, text, noise), names the
/// code does not know last, alphabetically.</summary>
public static class AnalysisOrder
{
    private static readonly string[] Modes = ["image", "text", "noise"];

    /// <summary>Whole layers, then MLP, self-attention and cross-attention as the paper introduces them,
    /// then heads; sites of other registered families after these, in registry order.</summary>
    private static List<string> Sites
    {
        get
        {
            var families = Families.ModelFamilies.All;
            if (_sites is null || _families != families.Count)
            {
                _sites = ["layer", "mlp", "attn", "cross", "mlp-out", "heads:attn", "heads:cross", .. families.SelectMany(f => f.Sites).Select(s => s.Name)];
                _sites = _sites.Distinct().ToList();
                _families = families.Count;
            }
            return _sites;
        }
    }

    private static List<string>? _sites;
    private static int _families;

    public static int Site(string site)
    {
        int i = Sites.IndexOf(site);
        return i >= 0 ? i : int.MaxValue;
    }

    public static int Mode(string mode)
    {
        int i = Array.IndexOf(Modes, mode);
        return i >= 0 ? i : int.MaxValue;
    }

    /// <summary>Sorts by model, task, mode, site: the grouping every table and figure uses.</summary>
    public static IOrderedEnumerable<T> ByGroup<T>(this IEnumerable<T> items, Func<T, (string Model, string Task, string Mode, string Site)> key) =>
        items.OrderBy(x => key(x).Model, StringComparer.Ordinal)
             .ThenBy(x => key(x).Task, StringComparer.Ordinal)
             .ThenBy(x => Mode(key(x).Mode)).ThenBy(x => key(x).Mode, StringComparer.Ordinal)
             .ThenBy(x => Site(key(x).Site)).ThenBy(x => key(x).Site, StringComparer.Ordinal);

    /// <summary>Head tables site by site, then by task and mode: how the per-table listings read.</summary>
    public static IEnumerable<HeadTable> SiteMajor(IEnumerable<HeadTable> tables) =>
        tables.OrderBy(t => Site(t.Site)).ThenBy(t => t.Site, StringComparer.Ordinal)
              .ThenBy(t => t.Task, StringComparer.Ordinal)
              .ThenBy(t => Mode(t.Mode)).ThenBy(t => t.Mode, StringComparer.Ordinal);
}
