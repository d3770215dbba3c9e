using Notice.Core.Analysis;
using Notice.Distributed;
using StackExchange.Redis;

namespace Notice.Aggregator;

/// <summary>
/// The live dashboard: one plain HTML page (no build step) polling a small JSON API for the run's
/// progress and workers, and heatmaps rendered from the results received so far.
/// </summary>
public static class Dashboard
{
    private sealed record FigureView(string Id, string Title, int Width, int Height);

    /// <summary>No inline script or style, nothing from elsewhere: what the page shows of the run
    /// (worker names, hosts, titles) can never run as script.</summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    public static void MapDashboard(this WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            context.Response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
            context.Response.Headers.XContentTypeOptions = "nosniff";
            context.Response.Headers["Referrer-Policy"] = "no-referrer";
            await next(context);
        });
        app.MapGet("/", () => Results.Content(Page, "text/html; charset=utf-8"));
        app.MapGet("/dashboard.js", () => Results.Content(Script, "text/javascript; charset=utf-8"));
        app.MapGet("/dashboard.css", () => Results.Content(Style, "text/css; charset=utf-8"));
        app.MapGet("/api/status", async (AggregatorService s) => Results.Json(await StatusAsync(s)));
        app.MapGet("/api/figures/{id}.png", async (string id, AggregatorService s) =>
        {
            var figure = (await Figures(s)).FirstOrDefault(f => f.Id == id);
            return figure.Figure is null ? Results.NotFound() : Results.File(figure.Figure.RenderPng(), "image/png");
        });
    }

    /// <summary>The /api/status answer. Malformed heartbeats are skipped and counted in badHeartbeats.</summary>
    public static async Task<object> StatusAsync(AggregatorService s)
    {
        var status = s.Aggregator.Status();
        var (depth, pending, alive) = s.Gauges.Current;
        var (workers, bad) = await WorkerHeartbeats.ReadAsync(s.Redis.GetDatabase(), new RedisKeys(s.Aggregator.RunId));
        var figures = (await Figures(s)).Select(f => new FigureView(f.Id, f.Title, f.Figure.Width, f.Figure.Height));
        return new { run = status, queue = new { depth, pending, workersAlive = alive }, workers, badHeartbeats = bad, figures };
    }

    private static readonly SemaphoreSlim FigureLock = new(1, 1);
    private static (int Version, List<(string Id, string Title, HeatmapFigure Figure)> Figures) _cache = (-1, []);

    /// <summary>Module-wise and head-wise heatmaps of the results so far (rebuilt when new shards arrive).</summary>
    private static async Task<List<(string Id, string Title, HeatmapFigure Figure)>> Figures(AggregatorService s)
    {
        await FigureLock.WaitAsync();
        try
        {
            int version = s.Aggregator.Version;
            if (_cache.Version == version) return _cache.Figures;
            var list = new List<(string, string, HeatmapFigure)>();
            if (version > 0)
            {
                var (rows, _) = await s.Aggregator.CurrentTablesAsync();
                foreach (var m in ModuleMap.FromResults(rows))
                    list.Add((AnalysisFigures.FileName("module", m.Model, m.Task, m.Mode, m.Site).Replace(".png", ""), $"{m.Task}: {m.Site}, {m.Mode} corruption", AnalysisFigures.Module(m)));
                foreach (var t in HeadTable.FromResults(rows))
                    list.Add((AnalysisFigures.FileName("heads", t.Model, t.Task, t.Mode, t.Site).Replace(".png", ""), $"{t.Task}: {t.Site}, {t.Mode} corruption", AnalysisFigures.Heads(t)));
            }
            _cache = (version, list);
            return list;
        }
        finally { FigureLock.Release(); }
    }

    private const string Page = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>Notice: live run</title>
        <link rel="stylesheet" href="dashboard.css">
        <script src="dashboard.js" defer></script></head>
        <body>
        <h1>Notice run <span id="run"></span> <span id="state"></span></h1>
        <div class="bar"><div class="fill" id="fill"></div></div>
        <p id="progress">waiting for the run…</p>
        <h2>Workers</h2>
        <table><thead><tr><th>worker</th><th>device</th><th>host</th><th>units done</th><th>units/s</th><th>last seen</th><th>state</th></tr></thead><tbody id="workers"></tbody></table>
        <p id="bad-heartbeats"></p>
        <h2>Heatmaps (filling in as results arrive)</h2>
        <div class="figs" id="figs"></div>
        </body></html>
        """;

    private const string Style = """
          body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
          h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
          .bar { width: 100%; max-width: 640px; height: 22px; background: #eee; border-radius: 4px; overflow: hidden; }
          .fill { height: 100%; background: #2a7ab0; width: 0%; transition: width .3s; }
          table { border-collapse: collapse; } td, th { padding: .2rem .7rem; border-bottom: 1px solid #ddd; text-align: left; }
          .figs { display: flex; flex-wrap: wrap; gap: 1rem; } .figs figure { margin: 0; } .figs img { max-width: 520px; border: 1px solid #ddd; }
          #state.done { color: #1a7f37; font-weight: bold; }
        """;

    /// <summary>The page's script: everything from the run is inserted as text (textContent), never as HTML.</summary>
    private const string Script = """
        const shown = {};
        async function tick() {
          try {
            const r = await fetch('api/status'); const s = await r.json(); const run = s.run;
            document.getElementById('run').textContent = run.runId;
            const total = run.unitsTotal || 0, done = run.unitsDone + run.unitsFailed;
            const pct = total ? Math.min(100, 100 * done / total) : 0;
            document.getElementById('fill').style.width = pct.toFixed(1) + '%';
            const eta = run.etaSeconds == null ? '–' : Math.round(run.etaSeconds) + ' s';
            document.getElementById('progress').textContent =
              `${pct.toFixed(1)}%: ${run.unitsDone} done, ${run.unitsFailed} failed of ${total} units; ${run.shardsDone + run.shardsDead}/${run.shardsTotal} shards; ${run.unitsPerSecond.toFixed(1)} units/s; ETA ${eta}; queue: ${s.queue.depth} waiting, ${s.queue.pending} running; ${s.queue.workersAlive} workers alive`;
            const state = document.getElementById('state');
            state.textContent = run.complete ? 'complete' : 'running'; state.className = run.complete ? 'done' : '';
            const rows = s.workers.map(w => {
              const tr = document.createElement('tr');
              for (const text of [w.worker, w.device, w.host, String(w.unitsDone), w.unitsPerSecond.toFixed(1), w.secondsAgo.toFixed(0) + ' s ago', w.alive ? 'alive' : 'stopped']) {
                const td = document.createElement('td'); td.textContent = text; tr.appendChild(td);
              }
              return tr;
            });
            document.getElementById('workers').replaceChildren(...rows);
            document.getElementById('bad-heartbeats').textContent = s.badHeartbeats ? `${s.badHeartbeats} malformed heartbeats skipped` : '';
            const figs = document.getElementById('figs');
            for (const f of s.figures) {
              let img = shown[f.id];
              if (!img) {
                const fig = document.createElement('figure'); img = document.createElement('img'); img.alt = f.title; img.className = 'heatmap';
                const cap = document.createElement('figcaption'); cap.textContent = f.title;
                fig.appendChild(img); fig.appendChild(cap); figs.appendChild(fig); shown[f.id] = img;
              }
              img.src = `api/figures/${f.id}.png?v=${run.shardsDone}`;
            }
            if (run.complete) return;
          } catch (e) { document.getElementById('progress').textContent = 'cannot reach the aggregator: ' + e; }
          setTimeout(tick, 1000);
        }
        document.addEventListener('DOMContentLoaded', tick);
        """;
}
