using System.Globalization;
using Notice.Core.Families;
using Notice.Core.Patching;
using Notice.Vlm;

namespace Notice.Core.Experiments;

/// <summary>One experiment option as users type it: its name, help and default (null: none, or the family's).</summary>
public sealed record ExperimentOption(string Name, string Help, string? Default = null, params string[] Aliases);

/// <summary>
/// The experiment's options, defined once: `notice patch` builds its command-line options from this
/// table and the AppHost reads its arguments with it, so both take the same names and defaults and
/// give the same errors (<see cref="ExperimentParser"/>).
/// </summary>
public static class ExperimentOptions
{
    public static readonly ExperimentOption Model = new("--model", "model folder; its family is read from config.json (default: the built-in models/shapes-blip)");
    public static readonly ExperimentOption Pairs = new("--pairs", "pairs manifest (JSON Lines); with the built-in model and no --pairs, the shapes tasks are generated for the run");
    public static readonly ExperimentOption Modes = new("--modes", "corruptions: image, text, noise (comma-separated)", "image,text", "--mode");
    public static readonly ExperimentOption Sites = new("--sites", "sites of the model's family (comma-separated), or default: the family's default sites", "default", "--site");
    public static readonly ExperimentOption Layers = new("--layers", "layers, e.g. 0-3,7 (default: all)");
    public static readonly ExperimentOption Heads = new("--heads", "heads of head sites, e.g. 0,2 (default: all)");
    public static readonly ExperimentOption Positions = new("--positions", "all, answer, last, a list of token positions, or default: the family's per site (LLaVA and Qwen2.5-VL heads: last; else all)", "default");
    public static readonly ExperimentOption Samples = new("--samples", "the first N samples of the manifest (default: all; the generated shapes tasks: 240)");
    public static readonly ExperimentOption Compat = new("--compat", "default (masks applied) or original (the NOTICE code's quirks)", "default");
    public static readonly ExperimentOption Method = new("--method",
        "exact (one patched run per unit), atp (attribution patching: a gradient estimate of every unit, one backward pass per sample and mode) or atp+exact (atp, then exact patching of the top units of each table, --confirm-top)", "exact");
    public static readonly ExperimentOption ConfirmTop = new("--confirm-top",
        "atp+exact: units of each (sample, mode, site) table confirmed by exact patching, the top by |estimated logit_diff|: a count K, or a fraction such as 0.05", "0.05");
    public static readonly ExperimentOption BatchSize = new("--batch-size", "units per forward pass", "64");
    public static readonly ExperimentOption Noise = new("--noise", "noise mode: the noise's standard deviation as a multiple of the embeddings'", "3");
    public static readonly ExperimentOption Seed = new("--seed", "seed of the noise (and of the generated shapes tasks)", "0");
    public static readonly ExperimentOption DType = new("--dtype", "float32, float16 or bfloat16", "float32");

    public static IReadOnlyList<ExperimentOption> All { get; } =
        [Model, Pairs, Modes, Sites, Layers, Heads, Positions, Samples, Compat, Method, ConfirmTop, BatchSize, Noise, Seed, DType];

    /// <summary>The option a command-line word names (its name or an alias), or null.</summary>
    public static ExperimentOption? Find(string word) => All.FirstOrDefault(o => o.Name == word || o.Aliases.Contains(word));
}

/// <summary>
/// Makes an <see cref="ExperimentSpec"/> from options as typed, validating every value once: the
/// same one-line error (an ArgumentException naming the option) wherever it is called from, and no
/// value silently replaced by a default.
/// </summary>
public static class ExperimentParser
{
    /// <summary>Samples of the built-in run on generated shapes tasks (80 per task): about three
    /// minutes on 2 CPU cores.</summary>
    public const int GeneratedSamples = 240;

    /// <param name="values">option name (<see cref="ExperimentOption.Name"/>) to the text typed; absent or null: not given</param>
    /// <param name="baseDirectory">what relative paths are relative to (default: the current directory)</param>
    /// <param name="allowGeneratedPairs">whether no --pairs with the built-in model means generated shapes tasks</param>
    public static ExperimentSpec Parse(IReadOnlyDictionary<string, string?> values, string? baseDirectory = null, bool allowGeneratedPairs = false)
    {
        string? Get(ExperimentOption o) => values.TryGetValue(o.Name, out var v) && v is not null ? v : o.Default;
        string Path(string p) => System.IO.Path.GetFullPath(p, baseDirectory ?? Environment.CurrentDirectory);

        var modelText = Get(ExperimentOptions.Model);
        var model = modelText is null ? RepoPaths.BuiltInModel : Path(modelText);
        if (!File.Exists(System.IO.Path.Combine(model, "config.json")))
            throw new ArgumentException($"--model: {model} is not a model folder (it holds no config.json)");
        var family = ModelFamilies.Of(model);

        var pairsText = Get(ExperimentOptions.Pairs);
        string pairs;
        if (pairsText is not null)
        {
            pairs = Path(pairsText);
            if (!File.Exists(pairs)) throw new ArgumentException($"--pairs: {pairs} does not exist");
        }
        else if (allowGeneratedPairs && modelText is null) pairs = "";
        else throw new ArgumentException(allowGeneratedPairs
            ? $"--pairs: required with --model {model} (only the built-in model runs on generated shapes tasks)"
            : "--pairs: required (a pairs manifest, JSON Lines)");

        var layers = Optional(Get(ExperimentOptions.Layers), t => IntList.Parse(t, "--layers"));
        var heads = Optional(Get(ExperimentOptions.Heads), t => IntList.Parse(t, "--heads"));

        int? samples = Optional(Get(ExperimentOptions.Samples), t => PositiveInt(t, "--samples"));
        if (pairs.Length == 0) samples ??= GeneratedSamples;

        return Validate(new ExperimentSpec
        {
            ModelDir = model,
            PairsPath = pairs,
            Modes = Words(Get(ExperimentOptions.Modes)!, "--modes").Select(ParseMode).Distinct().ToList(),
            Sites = family.ParseSites(Get(ExperimentOptions.Sites)),
            Layers = layers,
            Heads = heads,
            Positions = PositionSelection.Parse(Get(ExperimentOptions.Positions)!),
            Samples = samples,
            Method = PatchMethods.Parse(Get(ExperimentOptions.Method)!),
            ConfirmTop = PatchMethods.ParseConfirmTop(Get(ExperimentOptions.ConfirmTop)!),
            DType = VlmModel.ParseDType(Get(ExperimentOptions.DType)!),
            Patching = new PatchingOptions
            {
                Compat = Get(ExperimentOptions.Compat) switch
                {
                    "default" => CompatMode.Default,
                    "original" => CompatMode.Original,
                    var c => throw new ArgumentException($"--compat: expected default or original, found '{c}'"),
                },
                BatchSize = PositiveInt(Get(ExperimentOptions.BatchSize)!, "--batch-size"),
                NoiseMultiple = PositiveDouble(Get(ExperimentOptions.Noise)!, "--noise"),
                NoiseSeed = long.TryParse(Get(ExperimentOptions.Seed), NumberStyles.Integer, CultureInfo.InvariantCulture, out var seed)
                    ? seed : throw new ArgumentException($"--seed: expected an integer, found '{Get(ExperimentOptions.Seed)}'"),
            },
        }, family);
    }

    /// <summary>Checks an experiment against its model (from config.json, no weights): its sites are
    /// the family's, its layers and heads exist. The parser calls it, and so does every runner for
    /// experiments made in code.</summary>
    public static ExperimentSpec Validate(ExperimentSpec spec, ModelFamily? family = null)
    {
        family ??= ModelFamilies.Of(spec.ModelDir);
        string model = $"{family.Name} {spec.ModelName}";
        foreach (var site in spec.Sites)
            if (!family.Sites.Contains(site))
                throw new ArgumentException($"--sites: '{site.Name}' ({site.HookPoint}) is not a site of {model}; expected one of {string.Join(", ", family.Sites.Select(s => s.Name))}");
        if (spec.Sites.Count == 0) throw new ArgumentException("--sites: the experiment names no site");
        if (spec.Modes.Count == 0) throw new ArgumentException("--modes: the experiment names no corruption");
        var shape = family.Shape(spec.ModelDir);
        foreach (var l in spec.Layers ?? [])
            if (l < 0 || l >= shape.Layers) throw new ArgumentException($"--layers: layer {l} is out of range: {model} has layers 0..{shape.Layers - 1}");
        foreach (var h in spec.Heads ?? [])
            if (h < 0 || h >= shape.Heads) throw new ArgumentException($"--heads: head {h} is out of range: {model} has heads 0..{shape.Heads - 1}");
        if (!(spec.ConfirmTop > 0 && double.IsFinite(spec.ConfirmTop) && (spec.ConfirmTop < 1 || spec.ConfirmTop == Math.Floor(spec.ConfirmTop))))
            throw new ArgumentException($"--confirm-top: expected a count (a positive integer) or a fraction between 0 and 1, found {spec.ConfirmTop}");
        if (spec.Patching.BatchSize < 1) throw new ArgumentException($"--batch-size: expected a positive integer, found {spec.Patching.BatchSize}");
        return spec;
    }

    public static CorruptionMode ParseMode(string s) => s switch
    {
        "image" or "sip" => CorruptionMode.Image,
        "text" or "str" => CorruptionMode.Text,
        "noise" => CorruptionMode.Noise,
        _ => throw new ArgumentException($"--modes: expected image, text or noise, found '{s}'"),
    };

    /// <summary>A mode as results and messages name it.</summary>
    public static string Name(this CorruptionMode mode) => mode.ToString().ToLowerInvariant();

    private static List<string> Words(string text, string what)
    {
        var words = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        return words.Count > 0 ? words : throw new ArgumentException($"{what}: '{text}' names nothing");
    }

    private static T? Optional<T>(string? text, Func<string, T> parse) where T : class =>
        string.IsNullOrWhiteSpace(text) || text.Trim() == "all" ? null : parse(text);

    private static int? Optional(string? text, Func<string, int> parse) =>
        string.IsNullOrWhiteSpace(text) || text.Trim() == "all" ? null : parse(text);

    private static int PositiveInt(string text, string what) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v > 0
            ? v : throw new ArgumentException($"{what}: expected a positive integer, found '{text}'");

    private static double PositiveDouble(string text, string what) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0 && double.IsFinite(v)
            ? v : throw new ArgumentException($"{what}: expected a positive number, found '{text}'");
}
