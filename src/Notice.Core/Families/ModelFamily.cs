using Notice.Core.Attention;
using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Vlm;
using Notice.Vlm.Config;
using static TorchSharp.torch;

namespace Notice.Core.Families;

/// <summary>The patched text side's size, read from config.json alone (no weights).</summary>
public sealed record ModelShape(int Layers, int Heads);

/// <summary>
/// Everything Notice knows of one model family, in one place: how to recognise a folder of it from
/// config.json, how to load it, its patching backend (sample encoding, positions, engine), its
/// sites and default sites, its default positions, its attention probe, and how to count a run's
/// units from the tokenizer alone. A new family is one folder under Families/ plus one line in
/// <see cref="ModelFamilies"/>; nothing outside them chooses between families.
/// </summary>
public abstract class ModelFamily
{
    /// <summary>The family's name as people write it ("BLIP-VQA").</summary>
    public abstract string Name { get; }

    /// <summary>config.json's model_type for this family.</summary>
    public abstract string ModelType { get; }

    /// <summary>Whether a config.json describes a model of this family (default: its model_type).</summary>
    public virtual bool Recognises(JsonConfig config) => config.String("model_type", "") == ModelType;

    /// <summary>Every site a user may name, in the order tables list them.</summary>
    public abstract IReadOnlyList<PatchSite> Sites { get; }

    /// <summary>The sites of an experiment that names none.</summary>
    public abstract IReadOnlyList<PatchSite> DefaultSites { get; }

    /// <summary>The key `notice answer --json` writes the answer's logits under.</summary>
    public abstract string AnswerLogitsName { get; }

    /// <summary>Layers and heads of the patched text side, from config.json.</summary>
    public abstract ModelShape Shape(string folder);

    public abstract IVisionLanguageModel LoadModel(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null);

    /// <summary>The model with its patching engine and sample encoder; the backend owns the model.</summary>
    /// <param name="manifestPath">the pairs manifest, whose folder the records' image paths are relative to</param>
    public abstract PatchingBackend LoadBackend(string folder, PatchingOptions options, string manifestPath = "",
        ScalarType dtype = ScalarType.Float32, Device? device = null, Action<string>? warn = null);

    /// <summary>How many positions `all` names in a prompt, from the tokenizer alone.</summary>
    public abstract Func<string, int> PromptPositionCounter(string folder, CompatMode compat);

    /// <summary>Tokens of one word inside a prompt under the family's tokenizer (STR swaps words of equal count).</summary>
    public abstract Func<string, int> WordTokenCounter(string folder);

    /// <summary>The attention probe over a loaded model of this family.</summary>
    public abstract IAttentionProbe AttentionProbe(IVisionLanguageModel model, string manifestPath);

    /// <summary>The positions a site patches when the experiment says `default` (or says nothing).</summary>
    public virtual PositionSelection DefaultPositions(PatchSite site) => PositionSelection.All;

    /// <summary>The selection a site gets: `default` resolved for this family.</summary>
    public PositionSelection Positions(PatchSite site, PositionSelection requested) =>
        requested.Kind == PositionKind.Default ? DefaultPositions(site) : requested;

    /// <summary>A site of this family by the name users type.</summary>
    public PatchSite Site(string name) =>
        Sites.FirstOrDefault(s => s.Name == name)
        ?? throw new ArgumentException($"--sites: unknown site '{name}' for {Name}; expected one of {string.Join(", ", Sites.Select(s => s.Name))}");

    /// <summary>Comma-separated site names, or `default` for <see cref="DefaultSites"/>.</summary>
    public IReadOnlyList<PatchSite> ParseSites(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Trim() == "default") return DefaultSites;
        var sites = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Site).Distinct().ToList();
        return sites.Count > 0 ? sites : throw new ArgumentException($"--sites: '{text}' names no site");
    }

    public override string ToString() => Name;
}
