using Notice.Core.Families;
using Notice.Core;
using System.CommandLine;
using System.Globalization;
using System.Text;
using Notice.Core.Attention;
using Notice.Core.Results;
using Notice.Core.Tasks;
using Notice.Vlm;

namespace Notice.Cli.Commands;

/// <summary>notice attention: what chosen heads attend to in the image, against the average head.</summary>
public static class AttentionCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model folder", DefaultValueFactory = _ => RepoPaths.BuiltInModel };
        var pairs = new Option<string>("--pairs") { Description = "pairs manifest (masks give the object's ground truth)", Required = true };
        var heads = new Option<string>("--heads") { Description = "heads, e.g. L3.H0,L5.H3", Required = true };
        var output = new Option<string>("--out") { Description = "output folder", Required = true };
        var samples = new Option<int>("--samples") { Description = "samples measured", DefaultValueFactory = _ => 50 };
        var outliers = new Option<int>("--outliers") { Description = "outlier patches: the average head's top k", DefaultValueFactory = _ => 3 };
        var overlays = new Option<int>("--overlays") { Description = "samples drawn as overlays", DefaultValueFactory = _ => 4 };
        var cmd = new Command("attention", "attention of heads to image patches: object, outliers, entropy, and a function label") { model, pairs, heads, output, samples, outliers, overlays };
        cmd.SetAction(pr =>
        {
            var manifest = pr.GetValue(pairs)!;
            var outDir = pr.GetValue(output)!;
            var chosen = AttentionFunctions.ParseHeads(pr.GetValue(heads)!);
            var family = ModelFamilies.Of(pr.GetValue(model)!);
            using var vlm = family.LoadModel(pr.GetValue(model)!);
            var probe = family.AttentionProbe(vlm, manifest);
            var records = PairsManifest.Read(manifest).Take(pr.GetValue(samples)).ToList();
            var read = new List<SampleAttention>();
            foreach (var r in records)
            {
                try { read.Add(probe.Read(r)); }
                catch (Exception e) when (CliErrors.IsInputError(e)) { Console.Error.WriteLine($"skipped {r.Id}: {e.Message}"); }
            }
            var measures = AttentionFunctions.Measure(read, chosen, pr.GetValue(outliers));
            Directory.CreateDirectory(Path.Combine(outDir, "overlays"));
            ResultsTables.Write(Path.Combine(outDir, "attention.csv"), measures.Select(m => new AttentionRow(m)));
            File.WriteAllText(Path.Combine(outDir, "attention.md"), Markdown(measures));
            foreach (var s in read.Take(pr.GetValue(overlays)))
            {
                var panels = chosen.Select(h => ($"L{h.Layer}.H{h.Head}", s.Patches[h.Layer][h.Head])).Append(("average head", AttentionFunctions.Average(s))).ToList();
                File.WriteAllBytes(Path.Combine(outDir, "overlays", $"{s.Sample}.png"), AttentionOverlay.RenderPng(s.ImagePath, s.Grid, panels, s.Rows));
            }
            Console.Write(Markdown(measures));
            Console.WriteLine($"wrote {Path.Combine(outDir, "attention.csv")}, attention.md and {Math.Min(read.Count, pr.GetValue(overlays))} overlays");
            return 0;
        });
        return cmd;
    }

    private static string Markdown(IReadOnlyList<HeadAttentionMeasures> measures)
    {
        var sb = new StringBuilder();
        if (measures.Count > 0 && measures[0].HasMask)
            sb.Append(CultureInfo.InvariantCulture, $"The object covers {measures[0].ObjectArea:F3} of the image's patches on average: the mask mass of a head attending uniformly (chance).\n\n");
        sb.Append("| head | samples | mask mass (avg head) | outlier mass (avg head) | entropy (avg head) | function |\n| --- | ---: | --- | --- | --- | --- |\n");
        foreach (var m in measures)
            sb.Append(CultureInfo.InvariantCulture, $"| {m.Head} | {m.Samples} | {(m.HasMask ? $"{m.MaskMass:F3} ({m.AverageMaskMass:F3})" : "no masks")} | {m.OutlierMass:F3} ({m.AverageOutlierMass:F3}) | {m.Entropy:F2} ({m.AverageEntropy:F2}) | {m.Label} |\n");
        sb.Append(CultureInfo.InvariantCulture, $"\nRule (ratio {HeadAttentionMeasures.Ratio}): object detection when mask mass >= ratio x the average head's; outlier suppression when outlier mass <= average / ratio and mask mass not below the average head's; object suppression when mask mass <= average / ratio; else unlabelled.\n");
        return sb.ToString();
    }

    private sealed class AttentionRow(HeadAttentionMeasures m)
    {
        public string Head { get; } = m.Head;
        public int Samples { get; } = m.Samples;
        public double MaskMass { get; } = m.MaskMass;
        public double AverageMaskMass { get; } = m.AverageMaskMass;
        public double ObjectArea { get; } = m.ObjectArea;
        public double OutlierMass { get; } = m.OutlierMass;
        public double AverageOutlierMass { get; } = m.AverageOutlierMass;
        public double Entropy { get; } = m.Entropy;
        public double AverageEntropy { get; } = m.AverageEntropy;
        public string Function { get; } = m.Label.ToString();
    }
}
