using Notice.Vlm.Hooks;
using static TorchSharp.torch;

namespace Notice.Core.Patching;

/// <summary>The prompt ids of a sample's clean and corrupt runs ([1, T] each; the same tensor when only
/// the image differs) and how many input positions can be patched (0..Positions-1).</summary>
public sealed record PromptIds(Tensor Clean, Tensor Corrupt, int Positions);

/// <summary>
/// What a sample's clean and corrupt runs leave for its patched runs, in every family: the inputs
/// (so a method can run them again, with gradients if it needs them), the prompt ids, the clean run's
/// value at every hook point a patch reads, and the clean and corrupt answer logits the metrics are
/// measured against. A family's sample adds where its patched runs start from. The sample owns its
/// tensors (none of them in a dispose scope) and frees them in <see cref="Dispose"/>.
/// </summary>
public abstract class PreparedSample : IPreparedSample
{
    protected PreparedSample(PatchingInputs inputs, CorruptionMode mode, PromptIds ids, HookContext clean, Tensor cleanLogits, Tensor corruptLogits)
    {
        Inputs = inputs;
        Mode = mode;
        Positions = ids.Positions;
        CleanIds = Own(ids.Clean);
        CorruptIds = Own(ids.Corrupt);
        Clean = clean;
        CleanLogits = Own(cleanLogits);
        CorruptLogits = Own(corruptLogits);
        Baseline = MetricsCalculator.Baseline(cleanLogits, corruptLogits, inputs.CorrectId, inputs.IncorrectId);
    }

    public PatchingInputs Inputs { get; }
    public CorruptionMode Mode { get; }
    /// <summary>Input positions that can be patched: 0..Positions-1 (the clean prompt's, or the common ones).</summary>
    public int Positions { get; }
    /// <summary>The clean run's prompt ids [1, T].</summary>
    public Tensor CleanIds { get; }
    /// <summary>The corrupt run's prompt ids [1, T*] (the clean ones unless the text is corrupted).</summary>
    public Tensor CorruptIds { get; }
    /// <summary>The clean run's values at every hook point a patch may read, [1, S, ...] (S: the sequence the stack reads).</summary>
    public HookContext Clean { get; }
    /// <summary>The clean run's answer logits [1, V].</summary>
    public Tensor CleanLogits { get; }
    /// <summary>The corrupt run's answer logits [1, V].</summary>
    public Tensor CorruptLogits { get; }
    public SampleBaseline Baseline { get; }

    /// <summary>Where input position <paramref name="position"/> sits in the sequence the patched stack
    /// reads (its index in the recorded values); the same position unless image features are merged in.</summary>
    public virtual long SequencePosition(int position) => position;

    /// <summary>Takes <paramref name="tensor"/> out of any dispose scope: the sample owns it.</summary>
    protected static T Own<T>(T tensor) where T : Tensor
    {
        tensor.DetachFromDisposeScope();
        return tensor;
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (!disposing) return;
        Clean.Dispose();
        CleanLogits.Dispose();
        CorruptLogits.Dispose();
        CleanIds.Dispose();
        if (!ReferenceEquals(CorruptIds, CleanIds)) CorruptIds.Dispose();
    }
}
