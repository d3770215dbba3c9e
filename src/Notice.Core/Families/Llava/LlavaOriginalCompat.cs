using Notice.Vlm.Hooks;

using Notice.Core.Patching;

namespace Notice.Core.Families.Llava;

/// <summary>
/// Every quirk of the original NOTICE LLaVA code that `--compat original` reproduces, in one place
/// (observed by running it: ../shared/reference/README.md, "How the original NOTICE code patches
/// LLaVA"). The default mode differs from it in exactly these points:
/// <list type="number">
/// <item>Module values: attention_block and mlp_block write the clean hidden_states[l+1] (the residual
///   stream after layer l) into the attention output BEFORE o_proj and into the MLP output, instead of
///   the module's own clean output. Default: each module restored from its own clean output.</item>
/// <item>The last layer: hidden_states[L] is the FINAL-NORMED output, so the values written at the last
///   layer (all three module sites) are the normed stream. Default: the raw layer output.</item>
/// <item>Module-wise positions: `all` is the question and " ASSISTANT:" (input tokens n_fmt..T-1, n_fmt =
///   tokens before the question), the template and image never. Default: every text token.</item>
/// <item>Head-wise position: `answer` is the answer word's index PLUS n_fmt (their offset adds n_fmt
///   twice), and where that lies beyond the prompt the original raises IndexError and drops the sample.
///   Default: the answer word itself.</item>
/// <item>Answer token: the answer's LAST sentencepiece piece (processor(answer).input_ids[-1]).
///   Default: its first piece.</item>
/// </list>
/// Not reproduced: kind=None (`layer`) raises for every unit in the original (its layer index is
/// parsed from the wrong part of the module name); here it runs as the original would with that
/// parse fixed, which is how the reference `layer.scores` were made. Head values are right in the
/// original (the clean head output), so head sites are the same in both modes but for item 4.
/// </summary>
public static class LlavaOriginalCompat
{
    /// <summary>The original's value source for module sites at <paramref name="layer"/>:
    /// hidden_states[layer + 1], final-normed for the last layer (items 1 and 2).</summary>
    public static string HiddenState(int layer, int numLayers) =>
        layer == numLayers - 1 ? HookName.FinalNorm() : HookName.ResidPost(layer);

    /// <summary>The original's route of a unit (items 1 and 2). The attention site is written before
    /// o_proj, as the original hooks the attention module's output there.</summary>
    public static PatchRoute Route(PatchSite site, int layer, int numLayers)
    {
        if (site.PerHead) return PatchRoute.Same(site, layer);
        var target = site == LlavaSites.Attn ? HookName.AttnZ(layer) : site.Hook(layer);
        return new PatchRoute(target, HiddenState(layer, numLayers));
    }

    /// <summary>Module-wise `all` (item 3): input tokens questionStart..count-1.</summary>
    public static IReadOnlyList<int> ModuleWisePositions(int questionStart, int count) =>
        Enumerable.Range(questionStart, Math.Max(0, count - questionStart)).ToList();

    /// <summary>Head-wise `answer` (item 4): the answer word's index plus questionStart.</summary>
    public static int HeadWisePosition(int answerPosition, int questionStart) => answerPosition + questionStart;

    /// <summary>The answer token among an answer word's pieces (item 5).</summary>
    public static int AnswerPiece(IReadOnlyList<int> pieces) => pieces[^1];
}
