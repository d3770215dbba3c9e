using Notice.Core;
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

    private const string ModuleKind = "module", HeadsKind = "heads", ScatterKind = "scatter";

    public const string ScatterSection = "Estimates against exact patching (per head)";

    /// <summary>What analyze wrote into its out folder, one relative path a line: only these files are
    /// ever replaced or removed by a later analysis there.</summary>
    public const string ManifestFile = ".notice-written";

    public static async Task<ReportFiles> WriteAsync(string resultsDir, string outDir, bool force = false) =>
        Write(await ResultsFolder.LoadAsync(resultsDir), outDir, force);

    /// <param name="force">replace files of the same names that Notice did not write (else: <see cref="OutputExistsException"/>)</param>
    public static ReportFiles Write(ResultsFolder folder, string outDir, bool force = false)
    {
        var figuresDir = Path.Combine(outDir, FiguresFolder);

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

        var figures = new List<RenderedFigure>();
        foreach (var m in modules)
            figures.Add(Render("Module-wise patching (token x layer)", ModuleKind, m.Model, m.Task, m.Mode, m.Site, AnalysisFigures.Module(m)));
        foreach (var t in headTables)
            figures.Add(Render("Head-wise patching (layer x head)", HeadsKind, t.Model, t.Task, t.Mode, t.Site, AnalysisFigures.Heads(t)));

        // How each estimate agrees with exact patching, and one scatter per head table both have.
        var agreement = new List<MethodAgreement>();
        var byMethod = methods.Count > 1 ? methods.ToDictionary(m => m.Method, m => HeadTable.FromResults(m.Rows)) : [];
        if (byMethod.TryGetValue(MethodAgreement.Exact, out var exact))
            foreach (var (method, _) in methods.Where(m => m.Method != MethodAgreement.Exact))
                foreach (var a in MethodAgreement.Compare(exact, byMethod[method], method))
                {
                    agreement.Add(a);
                    var e = exact.First(t => (t.Model, t.Task, t.Mode, t.Site) == (a.Model, a.Task, a.Mode, a.Site));
                    var est = byMethod[method].First(t => (t.Model, t.Task, t.Mode, t.Site) == (a.Model, a.Task, a.Mode, a.Site));
                    var scatter = AnalysisFigures.Scatter(e, est, a);
                    figures.Add(new RenderedFigure(ScatterSection,
                        $"{a.Method} vs exact, {a.Model} / {a.Task}: {a.Site}, {a.Mode} corruption; Spearman {UniversalHeadsDocument.Num(a.Spearman)}, {AnalysisFigures.Recall(a)}",
                        $"{FiguresFolder}/{AnalysisFigures.FileName(ScatterKind + "-" + a.Method, a.Model, a.Task, a.Mode, a.Site)}", scatter.RenderPng()));
                }

        // Only files this analysis or an earlier one here wrote are replaced or removed.
        var written = new WrittenFiles(outDir);
        var targets = new List<string> { UniversalHeadsDocument.MarkdownFile, UniversalHeadsDocument.JsonFile, BaselinesSummaryFile, ModuleMeansFile, ReportFile };
        targets.AddRange(figures.Select(f => f.RelativePath));
        if (methods.Count > 1)
        {
            foreach (var (method, _) in methods.Where(m => m.Method != primary))
                targets.AddRange([MethodFile(UniversalHeadsDocument.MarkdownFile, method), MethodFile(UniversalHeadsDocument.JsonFile, method)]);
            targets.Add(MethodAgreement.FileName);
        }
        written.RefuseForeign(targets, force);
        Directory.CreateDirectory(figuresDir);
        written.Begin(targets);
        // Figures of an earlier analysis here would otherwise outlive their data.
        written.RemoveStale(targets);

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
        if (methods.Count > 1)
        {
            foreach (var (method, _) in methods.Where(m => m.Method != primary))
            {
                var sets = UniversalHeads.Find(byMethod[method]);
                tables.Add(WriteText(outDir, MethodFile(UniversalHeadsDocument.MarkdownFile, method), UniversalHeadsDocument.Markdown(byMethod[method], sets)));
                tables.Add(WriteText(outDir, MethodFile(UniversalHeadsDocument.JsonFile, method), UniversalHeadsDocument.Json(byMethod[method], sets)));
            }
            var agreementPath = Path.Combine(outDir, MethodAgreement.FileName);
            ResultsTables.Write(agreementPath, agreement);
            tables.Add(agreementPath);
        }

        foreach (var f in figures) File.WriteAllBytes(Path.Combine(outDir, f.RelativePath), f.Png);

        var report = WriteText(outDir, ReportFile, HtmlReport.Build(folder, headTables, universal, baselines, figures, methods.Count > 1 ? primary : null, agreement));
        written.Finish(targets);
        return new ReportFiles(report, tables, figures.Select(f => Path.GetFullPath(Path.Combine(outDir, f.RelativePath))).ToList());
    }

    /// <summary>universal_heads.md of another method: universal_heads.atp.md.</summary>
    public static string MethodFile(string file, string method) =>
        Path.GetFileNameWithoutExtension(file) + "." + method + Path.GetExtension(file);

    private static RenderedFigure Render(string section, string kind, string model, string task, string mode, string site, HeatmapFigure figure) =>
        new(section, $"{model} / {task}: {site}, {mode} corruption",
            $"{FiguresFolder}/{AnalysisFigures.FileName(kind, model, task, mode, site)}", figure.RenderPng());

    /// <summary>
    /// The out folder's <see cref="ManifestFile"/>. Its lines are read as untrusted: only names analyze
    /// itself writes (its tables, report.html, figures/module_*.png, figures/heads_*.png and figures/scatter-*.png, no other
    /// folder) are ever removed through it.
    /// </summary>
    private sealed class WrittenFiles(string outDir)
    {
        private readonly HashSet<string> _listed = Read(outDir);

        private string Full(string relative) => Path.Combine(outDir, relative.Replace('/', Path.DirectorySeparatorChar));

        private static HashSet<string> Read(string outDir)
        {
            var path = Path.Combine(outDir, ManifestFile);
            if (!File.Exists(path)) return new HashSet<string>(StringComparer.Ordinal);
            return File.ReadLines(path).Select(l => l.Trim()).Where(IsOurName).ToHashSet(StringComparer.Ordinal);
        }

        private static bool IsOurName(string relative)
        {
            if (relative is ReportFile or BaselinesSummaryFile or ModuleMeansFile || relative == UniversalHeadsDocument.MarkdownFile || relative == UniversalHeadsDocument.JsonFile)
                return true;
            var parts = relative.Split('/');
            return parts.Length == 2 && parts[0] == FiguresFolder && parts[1].EndsWith(".png", StringComparison.Ordinal)
                && (parts[1].StartsWith(ModuleKind + "_", StringComparison.Ordinal) || parts[1].StartsWith(HeadsKind + "_", StringComparison.Ordinal)
                    || parts[1].StartsWith(ScatterKind + "-", StringComparison.Ordinal))
                && parts[1].IndexOfAny(['\\', '\0']) < 0 && parts[1] != ".." && !parts[1].Contains("..", StringComparison.Ordinal);
        }

        /// <summary>A file of a target's name that Notice did not write: refused unless forced.</summary>
        public void RefuseForeign(IEnumerable<string> targets, bool force)
        {
            if (force) return;
            var foreign = targets.Where(t => !_listed.Contains(t) && (File.Exists(Full(t)) || Directory.Exists(Full(t)))).ToList();
            if (foreign.Count == 0) return;
            var names = string.Join(", ", foreign.Take(3)) + (foreign.Count > 3 ? $" and {foreign.Count - 3} more" : "");
            throw new OutputExistsException($"{Path.GetFullPath(outDir)}: {names} exist{(foreign.Count == 1 ? "s" : "")} and notice analyze did not write {(foreign.Count == 1 ? "it (--force replaces it)" : "them (--force replaces them)")}");
        }

        /// <summary>Lists the targets before writing them, so a file written by an interrupted analysis is still ours.</summary>
        public void Begin(IEnumerable<string> targets) => Save(_listed.Union(targets));

        /// <summary>Removes files an earlier analysis here wrote that this one does not.</summary>
        public void RemoveStale(IEnumerable<string> targets)
        {
            foreach (var stale in _listed.Except(targets).ToList())
                if (File.Exists(Full(stale))) File.Delete(Full(stale));
        }

        public void Finish(IEnumerable<string> targets) => Save(targets);

        private void Save(IEnumerable<string> names) =>
            File.WriteAllLines(Path.Combine(outDir, ManifestFile), names.Distinct().Order(StringComparer.Ordinal));
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
