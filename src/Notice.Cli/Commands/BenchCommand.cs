using System.CommandLine;

namespace Notice.Cli.Commands;

/// <summary>notice bench: speed of the fast path against the plain path at real model shapes; for
/// LLaVA also the peak memory of loading a 7B checkpoint.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var arch = new Option<string>("--arch") { Description = "blip (blip-vqa-base shapes), llava (llava-1.5-7b widths, reduced depth) or qwen25vl (Qwen2.5-VL-7B widths, reduced depth)", DefaultValueFactory = _ => "blip" };
        var samples = new Option<int>("--samples") { Description = "samples to time", DefaultValueFactory = _ => 2 };
        var plainUnits = new Option<int>("--plain-units") { Description = "units timed on the plain path (it is slow)", DefaultValueFactory = _ => 3 };
        var small = new Option<bool>("--small") { Description = "a small model instead of the real shapes (a quick check)" };
        var layers = new Option<int>("--layers") { Description = "llava, qwen25vl: decoder layers (of llava-1.5-7b's 32, Qwen2.5-VL-7B's 28)", DefaultValueFactory = _ => 4 };
        var visionLayers = new Option<int>("--vision-layers") { Description = "llava: vision-tower layers (of 24; the second-to-last hidden state is read); qwen25vl: vision blocks (of 32)", DefaultValueFactory = _ => 3 };
        var loadTest = new Option<bool>("--load-test") { Description = "llava: write a random float16 llava-1.5-7b checkpoint (~14 GB), load it into float16, report the peak memory, delete it; qwen25vl: the same with a bfloat16 Qwen2.5-VL-7B checkpoint (~16.6 GB)" };
        var dir = new Option<string?>("--dir") { Description = "--load-test: where to write the checkpoint (an empty or new folder; default a new folder under the temp directory)" };
        var workers = new Option<string?>("--workers") { Description = "instead: distributed throughput with these worker-process counts, e.g. 1,2" };
        var method = new Option<string>("--method") { Description = "exact (fast path against plain path) or atp (attribution patching against the exact fast path; blip, llava)", DefaultValueFactory = _ => "exact" };
        var repeat = new Option<int>("--repeat") { Description = "with --workers: the fixture pairs repeated this many times", DefaultValueFactory = _ => 8 };
        var imageSide = new Option<int>("--image-side") { Description = "qwen25vl: the image's side in pixels after resizing (a multiple of 28; 336 = 144 image tokens)", DefaultValueFactory = _ => 336 };
        var dtype = new Option<string>("--dtype") { Description = "llava --method atp: float32, float16 or bfloat16, the dtype the random model is built and run in", DefaultValueFactory = _ => "float32" };
        var cmd = new Command("bench", "units per second of the fast and the plain patching paths") { arch, samples, plainUnits, small, layers, visionLayers, loadTest, dir, workers, repeat, imageSide, method, dtype };
        cmd.SetAction(async pr =>
        {
            var t = Notice.Vlm.VlmModel.ParseDType(pr.GetValue(dtype)!);
            bool llavaAtp = pr.GetValue(workers) is null && !pr.GetValue(loadTest) && pr.GetValue(arch) == "llava" && pr.GetValue(method) == "atp";
            if (pr.GetResult(dtype) is { Implicit: false } && !llavaAtp)
                throw new ArgumentException("--dtype: the bench's dtype applies to --arch llava --method atp");
            if (pr.GetValue(workers) is { } w)
                return await Bench.WorkersAsync(Notice.Core.Experiments.IntList.Parse(w, "--workers"), pr.GetValue(repeat));
            var a = pr.GetValue(arch);
            if (a is not ("blip" or "llava" or "qwen25vl")) throw new ArgumentException($"--arch: expected blip, llava or qwen25vl, found '{a}'");
            if (pr.GetValue(loadTest))
            {
                if (a == "qwen25vl")
                    return Bench.QwenLoadTest(pr.GetValue(dir) ?? Path.Combine(Path.GetTempPath(), $"notice-qwen-load-{Guid.NewGuid():N}"), pr.GetValue(small));
                if (a != "llava") throw new ArgumentException("--load-test is a LLaVA or Qwen2.5-VL test: add --arch llava or --arch qwen25vl");
                return Bench.LoadTest(pr.GetValue(dir) ?? Path.Combine(Path.GetTempPath(), $"notice-llava-load-{Guid.NewGuid():N}"), pr.GetValue(small));
            }
            var m = pr.GetValue(method);
            if (m is not ("exact" or "atp")) throw new ArgumentException($"--method: expected exact or atp, found '{m}'");
            if (m == "atp")
            {
                if (a == "qwen25vl") throw new ArgumentException("--method atp: the AtP bench is BLIP's and LLaVA's (--arch blip or llava)");
                return a == "llava"
                    ? Bench.RunLlavaAtp(pr.GetValue(samples), pr.GetValue(small), pr.GetValue(layers), pr.GetValue(visionLayers), t)
                    : Bench.RunAtp(pr.GetValue(samples), pr.GetValue(small));
            }
            if (a == "qwen25vl")
            {
                int side = pr.GetValue(imageSide);
                if (side < 28 || side % 28 != 0) throw new ArgumentException($"--image-side: expected a multiple of 28, found {side}");
                return Bench.RunQwen(pr.GetValue(samples), pr.GetValue(plainUnits), pr.GetValue(small), pr.GetValue(layers), pr.GetValue(visionLayers), side);
            }
            return a == "llava"
                ? Bench.RunLlava(pr.GetValue(samples), pr.GetValue(plainUnits), pr.GetValue(small), pr.GetValue(layers), pr.GetValue(visionLayers))
                : Bench.Run(pr.GetValue(samples), pr.GetValue(plainUnits), pr.GetValue(small));
        });
        return cmd;
    }
}
