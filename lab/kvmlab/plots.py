"""Standalone SVG line charts of a run's samples (no plotting library)."""
import math
import os

from .common import pstdev
from .samples import pcpu_series

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_ticks(lo, hi, n=6):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 0.5:
        ticks.append(round(v, 6))
        v += step
    return ticks


def _missing(y):
    return y is None or (isinstance(y, float) and math.isnan(y))


def svg_chart(path, title, xlabel, ylabel, series, vlines=(), hlines=(), ymin=None, ymax=None):
    """series: [{label, pts:[(x,y)], color, dash, width}] -> a standalone SVG line chart."""
    width, height, left, right, top, bottom = 980, 460, 70, 220, 40, 55
    xs = [x for s in series for x, _ in s["pts"]] + [v[0] for v in vlines]
    ys = [y for s in series for _, y in s["pts"] if isinstance(y, (int, float)) and not math.isnan(y)]
    ys += [h[0] for h in hlines]
    if not xs:
        xs, ys = [0, 1], [0, 1]
    x0, x1 = min(xs), max(xs)
    y0 = min(ys) if ymin is None else ymin
    y1 = max(ys) * 1.05 if ymax is None else ymax
    yticks = nice_ticks(y0, y1)
    y0, y1 = min(y0, yticks[0]), max(y1, yticks[-1])
    xticks = nice_ticks(x0, x1, 10)
    x0, x1 = min(x0, xticks[0]), max(x1, xticks[-1])
    pw, ph = width - left - right, height - top - bottom

    def X(x):
        return left + (x - x0) / ((x1 - x0) or 1) * pw

    def Y(y):
        return top + ph - (y - y0) / ((y1 - y0) or 1) * ph

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left + pw / 2}" y="22" text-anchor="middle" font-size="15" '
         f'font-weight="bold">{esc(title)}</text>']
    for t in yticks:
        o.append(f'<line x1="{left}" y1="{Y(t):.1f}" x2="{left + pw}" y2="{Y(t):.1f}" stroke="#e5e5e5"/>')
        o.append(f'<text x="{left - 6}" y="{Y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in xticks:
        o.append(f'<line x1="{X(t):.1f}" y1="{top}" x2="{X(t):.1f}" y2="{top + ph}" stroke="#f0f0f0"/>')
        o.append(f'<text x="{X(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{t:g}</text>')
    o.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{left + pw / 2}" y="{height - 12}" text-anchor="middle">{esc(xlabel)}</text>')
    o.append(f'<text x="18" y="{top + ph / 2}" text-anchor="middle" '
             f'transform="rotate(-90 18 {top + ph / 2})">{esc(ylabel)}</text>')
    for y, label, color in hlines:
        o.append(f'<line x1="{left}" y1="{Y(y):.1f}" x2="{left + pw}" y2="{Y(y):.1f}" stroke="{color}" '
                 f'stroke-dasharray="2,3"/>')
        o.append(f'<text x="{left + pw - 4}" y="{Y(y) - 4:.1f}" text-anchor="end" fill="{color}">'
                 f'{esc(label)}</text>')
    last_x, row = -1e9, 0
    for x, label in sorted(vlines):
        o.append(f'<line x1="{X(x):.1f}" y1="{top}" x2="{X(x):.1f}" y2="{top + ph}" stroke="#000" '
                 f'stroke-dasharray="6,4"/>')
        row = row + 1 if X(x) - last_x < 7 * len(label) + 10 else 0  # stagger close labels
        last_x = X(x)
        o.append(f'<text x="{X(x) + 4:.1f}" y="{top + 14 + 15 * row}" fill="#000">{esc(label)}</text>')
    for s in series:
        pts = [(x, y) for x, y in s["pts"] if not _missing(y)]
        if not pts:
            continue
        d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
        dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
        o.append(f'<polyline fill="none" stroke="{s["color"]}" stroke-width="{s.get("width", 2)}"'
                 f'{dash} points="{d}"/>')
    legend_y = top + 8
    for s in series:
        dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
        o.append(f'<line x1="{left + pw + 14}" y1="{legend_y}" x2="{left + pw + 44}" y2="{legend_y}" '
                 f'stroke="{s["color"]}" stroke-width="{s.get("width", 2)}"{dash}/>')
        o.append(f'<text x="{left + pw + 50}" y="{legend_y + 4}">{esc(s["label"])}</text>')
        legend_y += 18
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
    return path


def plot_cpu(samples, outdir, marks, title):
    series = []
    by_pcpu = {}
    for r in samples.pcpu_rows:
        by_pcpu.setdefault(r["pcpu"], []).append(r)
    for c, rows in sorted(by_pcpu.items()):
        color = PALETTE[c % len(PALETTE)]
        series.append({"label": f"pCPU{c} load (sum of vCPUs)", "color": color,
                       "pts": [(r["t"], r["load_pct"]) for r in rows]})
        series.append({"label": f"pCPU{c} host busy /proc/stat", "color": color, "dash": "3,3",
                       "width": 1, "pts": [(r["t"], r["host_busy_pct"] if r["host_busy_pct"] != "" else None)
                                           for r in rows]})
    loads = pcpu_series(samples)
    series.append({"label": "std-dev of pCPU loads", "color": "#777", "width": 1.5, "dash": "8,3",
                   "pts": [(t, pstdev(v)) for t, v in loads.items()]})
    return svg_chart(os.path.join(outdir, "pcpu.svg"), title, "time since guests started (s)",
                     "load (% of one pCPU)", series, vlines=marks, hlines=[(5, "std-dev 5", "#777")],
                     ymin=0)


def plot_vcpu(samples, outdir, marks, title):
    by_guest = {}
    for r in samples.vcpu_rows:
        if r["usage_pct"] != "":
            by_guest.setdefault(r["guest"], {}).setdefault(r["t"], 0.0)
            by_guest[r["guest"]][r["t"]] += r["usage_pct"]
    series = [{"label": g, "color": PALETTE[i % len(PALETTE)], "pts": sorted(d.items())}
              for i, (g, d) in enumerate(sorted(by_guest.items()))]
    return svg_chart(os.path.join(outdir, "guests-cpu.svg"), title, "time since guests started (s)",
                     "guest CPU usage (% of one pCPU)", series, vlines=marks, ymin=0)


def plot_mem(samples, outdir, marks, title):
    by_guest = {}
    for r in samples.mem_rows:
        by_guest.setdefault(r["guest"], []).append(r)
    series = []
    for i, (g, rows) in enumerate(sorted(by_guest.items())):
        color = PALETTE[i % len(PALETTE)]
        series.append({"label": f"{g} actual", "color": color, "pts": [(r["t"], r["actual_mib"]) for r in rows]})
        series.append({"label": f"{g} unused", "color": color, "dash": "5,4", "width": 1.5,
                       "pts": [(r["t"], r["unused_mib"] if r["unused_mib"] != "" else None) for r in rows]})
    return svg_chart(os.path.join(outdir, "memory.svg"), title, "time since guests started (s)",
                     "MiB", series, vlines=marks, hlines=[(100, "100 MiB", "#777")], ymin=0)
