using System.CommandLine;
using Notice.Core.Analysis;

namespace Notice.Cli.Commands;

/// <summary>notice analyze: universal heads, heatmaps and the HTML report, from a results folder alone.</summary>
public static class AnalyzeCommand
{
    public static Command Create()
    {
        var results = new Option<string>("--results") { Description = "results folder (results.csv or results.parquet, baselines.csv, failures.csv, provenance.json)", Required = true };
        var output = new Option<string>("--out") { Description = "folder for the tables, figures/ and report.html (created if missing)", Required = true };
        var force = new Option<bool>("--force") { Description = "replace files in --out that have the names analyze writes but that analyze did not write" };
        var cmd = new Command("analyze", "find universal heads, draw heatmaps and write an HTML report from a results folder") { results, output, force };
        cmd.SetAction(async (pr, _) =>
        {
            // Only files analyze wrote before (listed in --out's .notice-written) are ever replaced or removed.
            var files = await ReportWriter.WriteAsync(pr.GetValue(results)!, pr.GetValue(output)!, pr.GetValue(force));
            foreach (var t in files.Tables) Console.WriteLine($"table  {t}");
            Console.WriteLine($"{files.Figures.Count} figures in {Path.GetDirectoryName(files.Report)}/{ReportWriter.FiguresFolder}");
            Console.WriteLine($"report {files.Report}");
            return 0;
        });
        return cmd;
    }
}
