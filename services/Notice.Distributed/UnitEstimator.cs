using Notice.Core.Experiments;
using Notice.Core.Patching;
using Notice.Core.Tasks;
using Notice.Vlm;
using Notice.Vlm.Blip;
using Notice.Vlm.Llava;
using Notice.Vlm.Text;

namespace Notice.Distributed;

/// <summary>
/// How many units a sample's shard will hold, from the model's config and tokenizer alone (no
/// weights), for the run's totals and progress. The worker plans the exact units with the model's
/// backend, as a local run does.
/// </summary>
public sealed class UnitEstimator
{
    private readonly ExperimentSpec _spec;
    private readonly Func<string, int> _allPositions;
    private readonly bool _headsAtLast;

    public int Layers { get; }
    public int Heads { get; }

    private UnitEstimator(ExperimentSpec spec, int layers, int heads, Func<string, int> allPositions, bool headsAtLast)
    {
        _spec = spec; Layers = layers; Heads = heads; _allPositions = allPositions; _headsAtLast = headsAtLast;
    }

    public static UnitEstimator For(ExperimentSpec spec)
    {
        if (VlmModel.ArchitectureOf(spec.ModelDir) == VlmArchitecture.Llava)
        {
            var config = LlavaConfig.Load(Path.Combine(spec.ModelDir, "config.json"));
            var tokenizer = LlamaTokenizer.Load(spec.ModelDir);
            int prefix = tokenizer.Encode(LlavaPrompt.Prefix).Length;
            bool original = spec.Patching.Compat == CompatMode.Original;
            // Text tokens with <image> counted once and never patched; the original patches from the question on.
            return new UnitEstimator(spec, config.Text.NumHiddenLayers, config.Text.NumAttentionHeads,
                p => tokenizer.Encode(LlavaPrompt.Format(p)).Length - (original ? prefix : 1), headsAtLast: true);
        }
        var blip = BlipConfig.Load(Path.Combine(spec.ModelDir, "config.json"));
        var bert = BlipTokenizer.Load(spec.ModelDir);
        return new UnitEstimator(spec, blip.Text.NumHiddenLayers, blip.Text.NumAttentionHeads, p => bert.Encode(p).Length, headsAtLast: false);
    }

    public long Units(PairRecord record, PatchSite site)
    {
        var selection = _spec.Positions;
        long positions = selection.Kind switch
        {
            "default" when site.PerHead && _headsAtLast => 1,
            "all" or "default" => _allPositions(record.Prompt),
            "list" => selection.List!.Count,
            _ => 1,
        };
        return positions * (_spec.Layers?.Count ?? Layers) * (site.PerHead ? _spec.Heads?.Count ?? Heads : 1);
    }
}
