using MessagePack;
using Notice.Core.Patching;

namespace Notice.Core.Experiments;

/// <summary>How a selection names token positions.</summary>
public enum PositionKind
{
    /// <summary>Each site's family default (<see cref="Families.IModelFamily.DefaultPositions"/>).</summary>
    Default,
    /// <summary>Every patchable prompt position.</summary>
    All,
    /// <summary>The answer word's position in the prompt.</summary>
    Answer,
    /// <summary>The last prompt position (where a causal model reads its answer).</summary>
    Last,
    /// <summary>The positions in <see cref="PositionSelection.List"/>.</summary>
    List,
}

/// <summary>Which token positions to patch: every prompt position, the answer word's, the last one,
/// a list, or each site's family default.</summary>
[MessagePackObject]
public sealed record PositionSelection([property: Key(0)] PositionKind Kind, [property: Key(1)] int[]? List = null)
{
    public static readonly PositionSelection All = new(PositionKind.All);
    public static readonly PositionSelection Answer = new(PositionKind.Answer);
    public static readonly PositionSelection Last = new(PositionKind.Last);
    public static readonly PositionSelection Default = new(PositionKind.Default);

    public static PositionSelection Parse(string text) => text.Trim() switch
    {
        "all" => All,
        "answer" => Answer,
        "last" => Last,
        "default" => Default,
        var t => new PositionSelection(PositionKind.List, IntList.Parse(t, "--positions").ToArray()),
    };

    public override string ToString() => Kind == PositionKind.List ? string.Join(",", List!) : Kind.ToString().ToLowerInvariant();

    public bool Equals(PositionSelection? other) =>
        other is not null && Kind == other.Kind && (List ?? []).SequenceEqual(other.List ?? []);

    public override int GetHashCode() => HashCode.Combine(Kind, List?.Length ?? 0);
}

/// <summary>Comma-separated non-negative integers and ranges ("0,2,5-7").</summary>
public static class IntList
{
    public static IReadOnlyList<int> Parse(string text, string what)
    {
        var result = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = part.IndexOf('-', 1);
            if (dash > 0 && int.TryParse(part[..dash], out int a) && int.TryParse(part[(dash + 1)..], out int b) && a >= 0 && a <= b && b - a < 1_000_000)
                result.AddRange(Enumerable.Range(a, b - a + 1));
            else if (int.TryParse(part, out int v) && v >= 0)
                result.Add(v);
            else
                throw new ArgumentException($"{what}: '{part}' is not a non-negative number or a range like 2-5");
        }
        if (result.Count == 0) throw new ArgumentException($"{what}: '{text}' names nothing");
        return result;
    }
}

/// <summary>How a unit's effect is measured. A method is one implementation over a family's engine.</summary>
public enum PatchMethod
{
    /// <summary>Exact activation patching: one patched forward run per unit.</summary>
    Exact,
    /// <summary>Attribution patching: every unit's first-order estimate from one corrupt forward and one
    /// backward pass per (sample, mode) (<see cref="Patching.PatchingEngine{TSample}.Estimate"/>).</summary>
    Atp,
    /// <summary>`atp+exact`: attribution patching for every unit, then exact patching of the top units by
    /// |estimated logit_diff| of each (sample, mode, site) table (<see cref="ExperimentSpec.ConfirmTop"/>);
    /// rows of both methods.</summary>
    AtpExact,
}

/// <summary>
/// One experiment, typed and validated: which model and samples, which corruptions, sites, layers,
/// heads and positions to patch, and how. <see cref="ExperimentParser"/> makes it from what a user
/// typed (the CLI and the AppHost alike); the distributed run carries it whole in its run spec, so
/// the coordinator, workers and aggregator never parse an option again.
/// </summary>
[MessagePackObject]
public sealed record ExperimentSpec
{
    /// <summary>The model folder (absolute once parsed).</summary>
    [Key(0)] public required string ModelDir { get; init; }
    /// <summary>The pairs manifest (absolute once parsed); empty: the built-in shapes tasks, generated for the run.</summary>
    [Key(1)] public required string PairsPath { get; init; }
    [Key(2)] public IReadOnlyList<CorruptionMode> Modes { get; init; } = [CorruptionMode.Image];
    /// <summary>Sites of the model's family (parsed against it).</summary>
    [Key(3)] public IReadOnlyList<PatchSite> Sites { get; init; } = [];
    /// <summary>Null: every layer.</summary>
    [Key(4)] public IReadOnlyList<int>? Layers { get; init; }
    /// <summary>Null: every head (head sites only).</summary>
    [Key(5)] public IReadOnlyList<int>? Heads { get; init; }
    [Key(6)] public PositionSelection Positions { get; init; } = PositionSelection.Default;
    /// <summary>Null: every sample of the manifest (for the built-in shapes tasks: the default run's count).</summary>
    [Key(7)] public int? Samples { get; init; }
    [Key(8)] public PatchingOptions Patching { get; init; } = new();
    [Key(9)] public PatchMethod Method { get; init; } = PatchMethod.Exact;
    /// <summary>The dtype the model is loaded in (float32, float16 or bfloat16).</summary>
    [Key(10)] public TorchSharp.torch.ScalarType DType { get; init; } = TorchSharp.torch.ScalarType.Float32;
    /// <summary>Where a local run computes (a distributed worker uses its own device).</summary>
    [Key(11)] public string Device { get; init; } = "cpu";
    /// <summary>atp+exact: the units of each (sample, mode, site) table confirmed by exact patching, the
    /// top by |estimated logit_diff|: K >= 1 a count, 0 &lt; f &lt; 1 a fraction of the table (rounded up).</summary>
    [Key(12)] public double ConfirmTop { get; init; } = 0.05;

    /// <summary>The model folder's name, as results name the model.</summary>
    [IgnoreMember] public string ModelName => Path.GetFileName(Path.GetFullPath(ModelDir).TrimEnd('/'));
}
