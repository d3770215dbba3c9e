using static TorchSharp.torch;

namespace Notice.Vlm.Llava;

/// <summary>
/// The dtype and device parameters are created with. LLaVA's modules are built in place, so a
/// 7B checkpoint loaded as float16 on a GPU never exists as float32 on the CPU first.
/// </summary>
internal sealed record Placement(ScalarType DType, Device Device);
