using Notice.Core.Patching;

namespace Notice.Core.Experiments;

/// <summary>Which token positions to patch: every prompt position, the answer word's, the last one
/// (where a causal model reads its answer), a list, or each site's default.</summary>
public sealed record PositionSelection(string Kind, IReadOnlyList<int>? List = null)
{
    public static readonly PositionSelection All = new("all");
    public static readonly PositionSelection Answer = new("answer");
    public static readonly PositionSelection Last = new("last");
    /// <summary>`all`, except LLaVA's head sites, which default to `last`.</summary>
    public static readonly PositionSelection Default = new("default");

    public static PositionSelection Parse(string text) => text switch
    {
        "all" => All,
        "answer" => Answer,
        "last" => Last,
        "default" => Default,
        _ => new PositionSelection("list", IntList.Parse(text, "--positions")),
    };

    public override string ToString() => Kind == "list" ? string.Join(",", List!) : Kind;
}

/// <summary>Comma-separated integers and ranges ("0,2,5-7").</summary>
public static class IntList
{
    public static IReadOnlyList<int> Parse(string text, string what)
    {
        var result = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = part.IndexOf('-', 1);
            if (dash > 0 && int.TryParse(part[..dash], out int a) && int.TryParse(part[(dash + 1)..], out int b) && a <= b)
                result.AddRange(Enumerable.Range(a, b - a + 1));
            else if (int.TryParse(part, out int v) && v >= 0)
                result.Add(v);
            else
                throw new ArgumentException($"{what}: '{part}' is not a number or a range like 2-5");
        }
        return result;
    }
}

/// <summary>An experiment: which samples, corruptions, sites, layers, heads and positions to patch.</summary>
public sealed record ExperimentSpec
{
    public required string ModelDir { get; init; }
    public required string PairsPath { get; init; }
    public IReadOnlyList<CorruptionMode> Modes { get; init; } = [CorruptionMode.Image];
    public IReadOnlyList<PatchSite> Sites { get; init; } = [PatchSite.Mlp];
    /// <summary>Null: every layer.</summary>
    public IReadOnlyList<int>? Layers { get; init; }
    /// <summary>Null: every head (head sites only).</summary>
    public IReadOnlyList<int>? Heads { get; init; }
    public PositionSelection Positions { get; init; } = PositionSelection.Default;
    /// <summary>Null: every sample of the manifest.</summary>
    public int? Samples { get; init; }
    public PatchingOptions Patching { get; init; } = new();
    public string Device { get; init; } = "cpu";
    /// <summary>float32, float16 or bfloat16: the dtype the model is loaded in.</summary>
    public string DType { get; init; } = "float32";
}
