using TorchSharp;
using Notice.Vlm.Qwen25Vl;
using static TorchSharp.torch;

namespace Notice.Core.Benchmarks;

/// <summary>Peak memory of loading a bfloat16 Qwen2.5-VL checkpoint into bfloat16 (<see cref="CheckpointLoadTest"/>).</summary>
public static class Qwen25VlLoadTest
{
    public static LoadTestModel Model(QwenConfig config) => new(ScalarType.BFloat16,
        () =>
        {
            using var meta = new Qwen25VlForConditionalGeneration(config, ScalarType.BFloat16, new Device(DeviceType.META));
            return meta.StateTensors().Select(kv => (kv.Key, kv.Value.shape)).ToList();
        },
        config.Save, folder => Qwen25VlForConditionalGeneration.Load(folder, ScalarType.BFloat16));

    public static LoadTestResult Run(QwenConfig config, string name, string folder, long shardBytes = 2L << 30, Action<string>? log = null) =>
        CheckpointLoadTest.Run(Model(config), name, folder, shardBytes, log);

    public static (long Parameters, long Bytes, int Shards) WriteRandomCheckpoint(QwenConfig config, string folder, long shardBytes, Action<string>? log = null) =>
        CheckpointLoadTest.WriteRandomCheckpoint(Model(config), folder, shardBytes, log);
}
