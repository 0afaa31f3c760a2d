"""The HTML of a run's report and of a comparison page: one file, inline CSS and script.

No network URL anywhere: the page opens from the file system offline. Interactive charts
(learning curves with toggles and hover values, the model comparison with a metric chooser)
are drawn as SVG by the small inline script below from JSON embedded in the page; each has a
static PNG twin in the figures directory for papers.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from jaxtrain.report import figures as report
from jaxtrain.report.figures import Figure
from jaxtrain.run_files import RunFiles

SECTIONS = ("Model comparison", "Training", "Data", "Test results")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
 color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:22px} header .sub{color:#c5cad3;font-size:13px}
main{padding:8px 28px 40px;max-width:1320px}
h2{border-bottom:2px solid #d5d9e0;padding-bottom:4px;margin-top:28px;font-size:18px}
table{border-collapse:collapse;font-size:13px;background:#fff}
td,th{border:1px solid #d5d9e0;padding:4px 10px;text-align:left}
th{background:#eef0f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:18px}
figure{background:#fff;border:1px solid #d5d9e0;border-radius:6px;margin:0;padding:10px;
 max-width:100%;box-sizing:border-box}
figure h3{margin:0 0 6px;font-size:15px} figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#555;margin-top:6px;max-width:1100px}
.error{color:#a00;font-size:13px} .note{color:#555;font-size:13px}
.chart{position:relative} .chart svg{background:#fff;display:block}
.legend{font-size:12px;margin:4px 0 0 50px;max-width:520px}
.legend span{cursor:pointer;margin-right:12px;white-space:nowrap;user-select:none}
.legend span.off{opacity:.35;text-decoration:line-through}
.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
.tip{position:absolute;pointer-events:none;background:rgba(29,35,48,.92);color:#fff;
 font-size:12px;padding:5px 8px;border-radius:4px;white-space:nowrap;display:none;z-index:2}
.panels{display:flex;flex-wrap:wrap;gap:12px}
details pre{background:#fff;border:1px solid #d5d9e0;padding:8px;font-size:12px;
 max-height:480px;overflow:auto}
a.png{font-size:12px}
"""

# Draws the charts of <script id="chart-data"> into <div class="chart" data-chart="i">.
CHART_SCRIPT = r"""
(function () {
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var NS = "http://www.w3.org/2000/svg";
  var specs = JSON.parse(document.getElementById("chart-data").textContent);
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, s, attrs) {
    var t = el("text", Object.assign({x: x, y: y, "font-size": 11}, attrs || {}), parent);
    t.textContent = s;
    return t;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "-";
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
    return (+v.toPrecision(4)).toString();
  }
  function ticks(lo, hi, n) {
    var span = hi - lo || 1, step = Math.pow(10, Math.floor(Math.log10(span / n)));
    [1, 2, 5, 10].some(function (m) { if (span / (step * m) <= n) { step *= m; return true; } });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }
  function tipAt(tip, box, evt, html) {
    var r = box.getBoundingClientRect();
    tip.innerHTML = html;
    tip.style.display = "block";
    var x = evt.clientX - r.left + 14;
    if (x + tip.offsetWidth > r.width) x = evt.clientX - r.left - tip.offsetWidth - 14;
    tip.style.left = x + "px";
    tip.style.top = (evt.clientY - r.top + 10) + "px";
  }
  function linePanel(box, p) {
    var W = 560, H = 320, L = 64, R = 12, T = 26, B = 44;
    var wrap = document.createElement("div");
    wrap.className = "chart";
    box.appendChild(wrap);
    var svg = el("svg", {width: W, height: H, role: "img"}, wrap);
    var tip = document.createElement("div");
    tip.className = "tip";
    wrap.appendChild(tip);
    var legend = document.createElement("div");
    legend.className = "legend";
    wrap.appendChild(legend);
    var on = p.series.map(function () { return true; });
    var sx, sy;
    function draw() {
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      var xs = [], ys = [];
      p.series.forEach(function (s, i) {
        if (!on[i]) return;
        s.x.forEach(function (x, j) { if (s.y[j] !== null) { xs.push(x); ys.push(s.y[j]); } });
      });
      if (!xs.length) { xs = [0, 1]; ys = [0, 1]; }
      var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
      var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
      var pad = (y1 - y0) * 0.05 || Math.abs(y0) * 0.05 || 1;
      y0 -= pad; y1 += pad;
      if (x1 === x0) { x0 -= 1; x1 += 1; }
      sx = function (v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
      sy = function (v) { return T + (y1 - v) / (y1 - y0) * (H - T - B); };
      text(svg, W / 2, 16, p.title, {"text-anchor": "middle", "font-size": 13,
                                     "font-weight": "bold"});
      ticks(y0, y1, 6).forEach(function (v) {
        el("line", {x1: L, x2: W - R, y1: sy(v), y2: sy(v), stroke: "#e3e6eb"}, svg);
        text(svg, L - 6, sy(v) + 4, fmt(v), {"text-anchor": "end"});
      });
      ticks(x0, x1, 8).forEach(function (v) {
        el("line", {x1: sx(v), x2: sx(v), y1: T, y2: H - B, stroke: "#f0f2f5"}, svg);
        text(svg, sx(v), H - B + 15, fmt(v), {"text-anchor": "middle"});
      });
      el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "none",
                  stroke: "#99a"}, svg);
      text(svg, L + (W - L - R) / 2, H - 8, p.xlabel, {"text-anchor": "middle"});
      text(svg, 14, T + (H - T - B) / 2, p.ylabel, {"text-anchor": "middle",
           transform: "rotate(-90 14 " + (T + (H - T - B) / 2) + ")"});
      p.series.forEach(function (s, i) {
        if (!on[i]) return;
        var d = "", pen = false;
        s.x.forEach(function (x, j) {
          if (s.y[j] === null) { pen = false; return; }
          d += (pen ? "L" : "M") + sx(x).toFixed(1) + " " + sy(s.y[j]).toFixed(1);
          pen = true;
        });
        el("path", {d: d, fill: "none", stroke: COLORS[i % COLORS.length],
                    "stroke-width": s.faint ? 1 : 1.8, opacity: s.faint ? 0.35 : 1}, svg);
        if (!s.faint && s.x.length <= 60) {  // dots: a single epoch is a point, not a line
          s.x.forEach(function (x, j) {
            if (s.y[j] !== null) el("circle", {cx: sx(x), cy: sy(s.y[j]), r: 2.5,
                                               fill: COLORS[i % COLORS.length]}, svg);
          });
        }
      });
      guide = el("line", {y1: T, y2: H - B, stroke: "#555", "stroke-dasharray": "3 3",
                          visibility: "hidden"}, svg);
    }
    var guide;
    p.series.forEach(function (s, i) {
      var item = document.createElement("span");
      item.innerHTML = '<i style="background:' + COLORS[i % COLORS.length] + '"></i>';
      item.appendChild(document.createTextNode(s.name));
      item.title = "click to hide or show";
      item.onclick = function () { on[i] = !on[i]; item.className = on[i] ? "" : "off"; draw(); };
      legend.appendChild(item);
    });
    draw();
    svg.addEventListener("mousemove", function (evt) {
      var r = svg.getBoundingClientRect(), mx = evt.clientX - r.left;
      var rows = [], at = null;
      p.series.forEach(function (s, i) {
        if (!on[i] || !s.x.length) return;
        var best = -1, dist = Infinity;
        s.x.forEach(function (x, j) {
          var d = Math.abs(sx(x) - mx);
          if (s.y[j] !== null && d < dist) { dist = d; best = j; }
        });
        if (best < 0 || dist > 40) return;
        if (at === null) at = s.x[best];
        rows.push('<span style="color:' + COLORS[i % COLORS.length] + '">&#9632;</span> ' +
                  s.name + ": " + fmt(s.y[best]) + " (" + p.xlabel + " " + fmt(s.x[best]) + ")");
      });
      if (!rows.length) {
        tip.style.display = "none";
        guide.setAttribute("visibility", "hidden");
        return;
      }
      guide.setAttribute("x1", sx(at)); guide.setAttribute("x2", sx(at));
      guide.setAttribute("visibility", "visible");
      tipAt(tip, wrap, evt, rows.join("<br>"));
    });
    svg.addEventListener("mouseleave", function () {
      tip.style.display = "none"; guide.setAttribute("visibility", "hidden");
    });
  }
  function bars(box, spec) {
    var metrics = Object.keys(spec.metrics);
    var chooser = document.createElement("select");
    metrics.forEach(function (m) {
      var o = document.createElement("option");
      o.value = m; o.textContent = m; chooser.appendChild(o);
    });
    chooser.value = spec.selected;
    var label = document.createElement("label");
    label.textContent = "metric: ";
    label.appendChild(chooser);
    box.appendChild(label);
    var wrap = document.createElement("div");
    wrap.className = "chart";
    box.appendChild(wrap);
    var tip = document.createElement("div");
    tip.className = "tip";
    function draw() {
      wrap.innerHTML = "";
      wrap.appendChild(tip);
      var m = chooser.value, vals = spec.metrics[m], names = Object.keys(vals);
      var target = spec.targets[m];
      var W = 760, L = 300, R = 90, T = 30, B = 40, ROW = 30, H = T + B + ROW * names.length;
      var svg = el("svg", {width: W, height: H, role: "img"}, wrap);
      var all = names.map(function (n) { return vals[n]; })
                     .concat(target === undefined ? [] : [target])
                     .filter(function (v) { return v !== null; });
      var hi = Math.max.apply(null, all), lo = Math.min.apply(null, all);
      // Scores that all lie high (0.95 vs 0.98) differ invisibly on a 0-1 axis: start the
      // axis below the lowest one then, and say so under the axis.
      var x0 = (names.length > 1 && lo > 0.5 && hi <= 1) ?
        Math.max(0, Math.floor((lo - 0.05) * 20) / 20) : 0;
      hi = hi > 0 ? x0 + (hi - x0) * 1.05 : 1;
      var sx = function (v) { return L + (v - x0) / (hi - x0) * (W - L - R); };
      var best = names.reduce(function (a, n) { return vals[n] > vals[a] ? n : a; }, names[0]);
      text(svg, W / 2, 18, "Model comparison: " + m + " (test)",
           {"text-anchor": "middle", "font-size": 13, "font-weight": "bold"});
      ticks(x0, hi, 6).forEach(function (v) {
        el("line", {x1: sx(v), x2: sx(v), y1: T, y2: H - B, stroke: "#e3e6eb"}, svg);
        text(svg, sx(v), H - B + 15, fmt(v), {"text-anchor": "middle"});
      });
      text(svg, L + (W - L - R) / 2, H - 8, m + " (test)" +
           (x0 > 0 ? ", axis starts at " + fmt(x0) : ""), {"text-anchor": "middle"});
      names.forEach(function (n, i) {
        var y = T + i * ROW + 5, v = vals[n];
        var bar = el("rect", {x: L, y: y, height: ROW - 10,
                              width: v === null ? 0 : Math.max(sx(v) - L, 0),
                              fill: n === best ? "#2ca02c" : "#9fb7d0"}, svg);
        text(svg, L - 8, y + ROW / 2, n.length > 44 ? n.slice(0, 43) + "\u2026" : n,
             {"text-anchor": "end"});
        text(svg, sx(v) + 4, y + ROW / 2, fmt(v));
        bar.addEventListener("mousemove", function (evt) {
          tipAt(tip, wrap, evt, n + "<br>" + m + " = " + v +
                (target === undefined ? "" : "<br>target " + target));
        });
        bar.addEventListener("mouseleave", function () { tip.style.display = "none"; });
      });
      if (target !== undefined) {
        el("line", {x1: sx(target), x2: sx(target), y1: T - 4, y2: H - B, stroke: "#d62728",
                    "stroke-dasharray": "5 4", "stroke-width": 1.5}, svg);
        text(svg, sx(target) + 3, T - 6, "target " + fmt(target), {fill: "#d62728"});
      }
    }
    chooser.onchange = draw;
    draw();
  }
  document.querySelectorAll("div[data-chart]").forEach(function (box) {
    var spec = specs[+box.getAttribute("data-chart")];
    if (spec.type === "lines") {
      var panels = document.createElement("div");
      panels.className = "panels";
      box.appendChild(panels);
      spec.panels.forEach(function (p) { linePanel(panels, p); });
    } else if (spec.type === "bars") {
      bars(box, spec);
    }
  });
})();
"""


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4f}"
    return _esc(v)


def _figures_html(figs: Sequence[Figure], charts: list[dict]) -> str:
    parts = []
    sections = list(dict.fromkeys([s for s in SECTIONS if any(f.section == s for f in figs)]
                                  + [f.section for f in figs]))
    for section in sections:
        parts.append(f"<h2>{_esc(section)}</h2><div class='grid'>")
        for f in (f for f in figs if f.section == section):
            body = ""
            if f.error:
                body = f"<p class='error'>could not be drawn: {_esc(f.error)}</p>"
            elif f.chart is not None:
                charts.append(f.chart)
                body = f"<div data-chart='{len(charts) - 1}'></div>"
                if f.file:
                    body += f"<a class='png' href='{_esc(f.file)}'>static PNG</a>"
            elif f.file:
                body = f"<img src='{_esc(f.file)}' alt='{_esc(f.title)}'>"
            caption = f"<figcaption>{_esc(f.caption)}</figcaption>" if f.caption else ""
            parts.append(f"<figure><h3>{_esc(f.title)}</h3>{body}{caption}</figure>")
        parts.append("</div>")
    return "".join(parts)


def _page(title: str, subtitle: str, body: str, charts: list[dict]) -> str:
    # "</" inside the JSON would end the script element early; NaN is no JSON.
    data = json.dumps(_finite_only(charts), allow_nan=False).replace("</", "<\\/")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{_esc(title)}</h1><div class='sub'>{subtitle}</div></header>"
            f"<main>{body}</main>"
            f"<script id='chart-data' type='application/json'>{data}</script>"
            f"<script>{CHART_SCRIPT}</script></body></html>")


def _finite_only(obj: Any) -> Any:
    """`obj` with every NaN/inf float replaced by None (null: a gap in a chart)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_only(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_only(v) for v in obj]
    return obj


def _status(run: RunFiles) -> str:
    epochs = len(run.history)
    planned = run.planned_epochs
    if run.finished:
        r = run.results
        early = " (stopped early)" if r.get("stopped_early") else ""
        return (f"finished: {r.get('epochs_trained', epochs)} epochs{early}, best step "
                f"{r.get('best_step')}")
    return f"running: {epochs} of {planned if planned else '?'} epochs done (no test yet)"


def headline_table(run: RunFiles) -> str:
    """The headline metrics; each cell carries its exact value in data-value (tests)."""
    head = report.headline(run)
    if not head:
        return "<p class='note'>No metrics yet.</p>"
    what = "test" if run.finished else "validation, last epoch"
    rows = "".join(f"<tr><th>{_esc(k)}</th><td class='num headline' data-metric='{_esc(k)}' "
                   f"data-value='{v!r}'>{_value(v)}</td></tr>" for k, v in head.items())
    base = (run.results or {}).get("baseline")
    extra = ""
    if isinstance(base, dict):
        cells = "".join(f"<tr><th>{_esc(k)}</th><td class='num'>{_value(base[k])}</td></tr>"
                        for k in head if isinstance(base.get(k), int | float))
        if cells:
            extra = (f"<h3>Baseline: {_esc(base.get('model', ''))}</h3>"
                     f"<table>{cells}</table>")
    return f"<h2>Headline metrics ({what})</h2><table>{rows}</table>{extra}"


def _all_metrics(run: RunFiles) -> str:
    test = (run.results or {}).get("test", {})
    if not test:
        return ""
    rows = "".join(f"<tr><th>{_esc(k)}</th><td class='num'>{_value(v)}</td></tr>"
                   for k, v in sorted(test.items()))
    return f"<details><summary>All test metrics ({len(test)})</summary><table>{rows}</table>" \
           "</details>"


def _json_block(title: str, obj: Any) -> str:
    if not obj:
        return ""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    return f"<details><summary>{_esc(title)}</summary><pre>{_esc(text)}</pre></details>"


def run_page(run: RunFiles, figs: Sequence[Figure]) -> str:
    charts: list[dict] = []
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (f"system <b>{_esc(run.system)}</b> &middot; {_esc(_status(run))} &middot; "
                f"{_esc(run.workdir)} &middot; report made {now}")
    results = run.results or {}
    body = (headline_table(run) + _all_metrics(run) + _figures_html(figs, charts)
            + "<h2>Run</h2>" + _json_block("Config (config.json)", run.config)
            + _json_block("Set-up (results.json setup)", results.get("setup"))
            + _json_block("Data (results.json data)", results.get("data"))
            + _json_block("Time breakdown (results.json time_breakdown)",
                          results.get("time_breakdown")))
    return _page(f"{run.name}: {run.system} run report", subtitle, body, charts)


def _flat_config(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out |= _flat_config(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: obj}


def comparison_page(runs: Sequence[RunFiles], figs: Sequence[Figure], page_dir: str) -> str:
    """Headline metrics side by side, the config keys that differ, and the shared figures."""
    charts: list[dict] = []
    metrics = list(dict.fromkeys(k for r in runs for k in report.headline(r)))
    head = "".join(f"<th>{_esc(r.name)}</th>" for r in runs)
    rows = "".join(
        f"<tr><th>{_esc(m)}</th>" + "".join(
            f"<td class='num headline' data-run='{_esc(r.name)}' data-metric='{_esc(m)}' "
            f"data-value='{report.headline(r)[m]!r}'>{_value(report.headline(r)[m])}</td>"
            if m in report.headline(r) else "<td>-</td>" for r in runs) + "</tr>" for m in metrics)
    status = "".join(f"<td>{_esc(_status(r))}<br>"
                     f"<a href='{_esc(_rel_report(r, page_dir))}'>report</a></td>" for r in runs)
    flat = [_flat_config(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1
              and not k.startswith("workdir")]
    diff_rows = "".join(f"<tr><th>{_esc(k)}</th>" + "".join(
        f"<td>{_esc(json.dumps(f.get(k)))}</td>" for f in flat) + "</tr>" for k in differ)
    body = (f"<h2>Runs</h2><table><tr><th></th>{head}</tr><tr><th>status</th>{status}</tr>"
            f"{rows}</table>"
            f"<h2>Config differences</h2>" + (
                f"<table><tr><th>key</th>{head}</tr>{diff_rows}</table>" if differ else
                "<p class='note'>The configs are identical.</p>")
            + _figures_html(figs, charts))
    return _page(f"Comparison of {len(runs)} runs", _esc(", ".join(r.name for r in runs)),
                 body, charts)


def _rel_report(run: RunFiles, page_dir: str) -> str:
    return os.path.relpath(os.path.join(run.workdir, "report.html"), page_dir).replace(
        os.sep, "/")
