using Notice.Core.Results;

namespace Notice.Core.Analysis;

/// <summary>What <see cref="ReportWriter"/> wrote, as full paths.</summary>
public sealed record ReportFiles(string Report, IReadOnlyList<string> Tables, IReadOnlyList<string> Figures);

/// <summary>
/// Reads a results folder and writes its analysis into an out folder: the universal head table
/// (universal_heads.md, .json), the baselines summary and the numbers behind the module heatmaps
/// (CSV), one PNG per heatmap under figures/, and report.html with all of it inside.
/// </summary>
public static class ReportWriter
{
    public const string ReportFile = "report.html";
    public const string FiguresFolder = "figures";
    public const string BaselinesSummaryFile = "baselines_summary.csv";
    public const string ModuleMeansFile = "module_means.csv";

    private const string ModuleKind = "module", HeadsKind = "heads";

    public static async Task<ReportFiles> WriteAsync(string resultsDir, string outDir) =>
        Write(await ResultsFolder.LoadAsync(resultsDir), outDir);

    public static ReportFiles Write(ResultsFolder folder, string outDir)
    {
        var figuresDir = Path.Combine(outDir, FiguresFolder);
        Directory.CreateDirectory(figuresDir);
        // Figures of an earlier analysis in the same folder would otherwise outlive their data.
        foreach (var old in Directory.EnumerateFiles(figuresDir, "*.png").Where(IsOurFigure).ToList()) File.Delete(old);

        // Results of several methods (atp+exact): figures and universal_heads.md from the primary
        // method's rows (the one with the most rows), universal heads of the others in their own files,
        // and how each estimate agrees with exact patching.
        var methods = MethodAgreement.ByMethod(folder.Results);
        var primary = MethodAgreement.Primary(methods);
        var rows = methods.Count <= 1 ? folder.Results : methods.First(m => m.Method == primary).Rows;
        var headTables = HeadTable.FromResults(rows);
        var universal = UniversalHeads.Find(headTables);
        var modules = ModuleMap.FromResults(rows);
        var baselines = BaselineSummary.FromBaselines(folder.Baselines);

        var tables = new List<string>
        {
            WriteText(outDir, UniversalHeadsDocument.MarkdownFile, UniversalHeadsDocument.Markdown(headTables, universal)),
            WriteText(outDir, UniversalHeadsDocument.JsonFile, UniversalHeadsDocument.Json(headTables, universal)),
        };
        var summaryPath = Path.Combine(outDir, BaselinesSummaryFile);
        ResultsTables.Write(summaryPath, baselines);
        var meansPath = Path.Combine(outDir, ModuleMeansFile);
        ResultsTables.Write(meansPath, modules.SelectMany(ModuleMeanRow.Of));
        tables.AddRange([summaryPath, meansPath]);
        var agreement = new List<MethodAgreement>();
        if (methods.Count > 1)
        {
            var byMethod = methods.ToDictionary(m => m.Method, m => HeadTable.FromResults(m.Rows));
            foreach (var (method, _) in methods.Where(m => m.Method != primary))
            {
                var sets = UniversalHeads.Find(byMethod[method]);
                tables.Add(WriteText(outDir, MethodFile(UniversalHeadsDocument.MarkdownFile, method), UniversalHeadsDocument.Markdown(byMethod[method], sets)));
                tables.Add(WriteText(outDir, MethodFile(UniversalHeadsDocument.JsonFile, method), UniversalHeadsDocument.Json(byMethod[method], sets)));
            }
            if (byMethod.TryGetValue(MethodAgreement.Exact, out var exact))
                foreach (var (method, _) in methods.Where(m => m.Method != MethodAgreement.Exact))
                    agreement.AddRange(MethodAgreement.Compare(exact, byMethod[method], method));
            var agreementPath = Path.Combine(outDir, MethodAgreement.FileName);
            ResultsTables.Write(agreementPath, agreement);
            tables.Add(agreementPath);
        }

        var figures = new List<RenderedFigure>();
        foreach (var m in modules)
            figures.Add(Render("Module-wise patching (token x layer)", ModuleKind, m.Model, m.Task, m.Mode, m.Site, AnalysisFigures.Module(m)));
        foreach (var t in headTables)
            figures.Add(Render("Head-wise patching (layer x head)", HeadsKind, t.Model, t.Task, t.Mode, t.Site, AnalysisFigures.Heads(t)));
        foreach (var f in figures) File.WriteAllBytes(Path.Combine(outDir, f.RelativePath), f.Png);

        var report = WriteText(outDir, ReportFile, HtmlReport.Build(folder, headTables, universal, baselines, figures, methods.Count > 1 ? primary : null, agreement));
        return new ReportFiles(report, tables, figures.Select(f => Path.GetFullPath(Path.Combine(outDir, f.RelativePath))).ToList());
    }

    /// <summary>universal_heads.md of another method: universal_heads.atp.md.</summary>
    public static string MethodFile(string file, string method) =>
        Path.GetFileNameWithoutExtension(file) + "." + method + Path.GetExtension(file);

    private static RenderedFigure Render(string section, string kind, string model, string task, string mode, string site, HeatmapFigure figure) =>
        new(section, $"{model} / {task}: {site}, {mode} corruption",
            $"{FiguresFolder}/{AnalysisFigures.FileName(kind, model, task, mode, site)}", figure.RenderPng());

    private static bool IsOurFigure(string path)
    {
        var name = Path.GetFileName(path);
        return name.StartsWith(ModuleKind + "_", StringComparison.Ordinal) || name.StartsWith(HeadsKind + "_", StringComparison.Ordinal);
    }

    private static string WriteText(string dir, string name, string text)
    {
        var path = Path.GetFullPath(Path.Combine(dir, name));
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>A row of module_means.csv: one cell of a module heatmap.</summary>
    private sealed record ModuleMeanRow(string Model, string Task, string Mode, string Site, int Layer, int Position, string Token, double MeanLogitDiff, int Samples)
    {
        public static IEnumerable<ModuleMeanRow> Of(ModuleMap m)
        {
            for (int l = 0; l < m.Layers.Count; l++)
                for (int p = 0; p < m.Positions.Count; p++)
                    if (!double.IsNaN(m.Values[l, p]))
                        yield return new ModuleMeanRow(m.Model, m.Task, m.Mode, m.Site, m.Layers[l], m.Positions[p], m.Tokens?[p] ?? "", m.Values[l, p], m.Samples);
        }
    }
}
