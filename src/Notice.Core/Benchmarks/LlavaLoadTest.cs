using TorchSharp;
using Notice.Vlm.Llava;
using static TorchSharp.torch;

namespace Notice.Core.Benchmarks;

/// <summary>Peak memory of loading a float16 LLaVA checkpoint into float16 (<see cref="CheckpointLoadTest"/>).</summary>
public static class LlavaLoadTest
{
    public static LoadTestModel Model(LlavaConfig config) => new(ScalarType.Float16,
        () =>
        {
            using var meta = new LlavaForConditionalGeneration(config, ScalarType.Float16, new Device(DeviceType.META));
            return meta.StateTensors().Select(kv => (kv.Key, kv.Value.shape)).ToList();
        },
        config.Save, folder => LlavaForConditionalGeneration.Load(folder, ScalarType.Float16));

    public static LoadTestResult Run(LlavaConfig config, string name, string folder, long shardBytes = 2L << 30, Action<string>? log = null) =>
        CheckpointLoadTest.Run(Model(config), name, folder, shardBytes, log);

    public static (long Parameters, long Bytes, int Shards) WriteRandomCheckpoint(LlavaConfig config, string folder, long shardBytes, Action<string>? log = null) =>
        CheckpointLoadTest.WriteRandomCheckpoint(Model(config), folder, shardBytes, log);
}
