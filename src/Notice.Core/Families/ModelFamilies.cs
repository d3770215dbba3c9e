using Notice.Core.Families.Blip;
using Notice.Core.Families.Llava;
using Notice.Core.Families.Qwen25Vl;
using Notice.Vlm.Config;

namespace Notice.Core.Families;

/// <summary>
/// The registry of model families: the one place a model folder's family is decided, from its
/// config.json. Add a family here (one line) and in its own folder; everything else asks this.
/// </summary>
public static class ModelFamilies
{
    private static readonly List<ModelFamily> Registered =
    [
        new BlipFamily(),
        new LlavaFamily(),
        new Qwen25VlFamily(),
    ];

    private static readonly Lock Gate = new();

    public static IReadOnlyList<ModelFamily> All { get { lock (Gate) return Registered.ToList(); } }

    /// <summary>Adds a family (a plug-in, or a test's stand-in); a family registered later is asked first.</summary>
    public static void Register(ModelFamily family)
    {
        lock (Gate)
        {
            if (Registered.Any(f => f.GetType() == family.GetType())) return;
            Registered.Insert(0, family);
        }
    }

    /// <summary>The family of a model folder; an unknown model_type is an error listing the known families.</summary>
    public static ModelFamily Of(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: model folder not found");
        var config = JsonConfig.Load(Path.Combine(folder, "config.json"));
        var family = All.FirstOrDefault(f => f.Recognises(config));
        if (family is not null) return family;
        var type = config.String("model_type", "");
        throw config.Error("model_type", $"\"{type}\" is not a model family Notice implements; known: " +
            string.Join(", ", All.Select(f => $"{f.Name} (model_type \"{f.ModelType}\")")));
    }
}
