"""Server-rendered SVG charts: stacked bars, lines and single bars, no JavaScript, no chart library.

Every chart is a ``<svg>`` with a ``viewBox`` (it scales to its container), colours come from CSS
classes (``s0`` … ``s7``: one per series), every bar or point has a ``<title>`` (the browser's tooltip)
and every text is escaped. Numbers are also put in ``data-*`` attributes so tests can read them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from markupsafe import Markup, escape

W, H = 640, 180
PAD_L, PAD_R, PAD_T, PAD_B = 44, 8, 10, 22


def _fmt_num(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.1f}k" if v < 100_000 else f"{v / 1000:.0f}k"
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.2g}"


def _frame(label: str, top: str, xlabels: Sequence[tuple[float, str]], body: list[str], *, cls: str) -> Markup:
    parts = [f'<svg class="chart {cls}" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}" '
             f'preserveAspectRatio="none">']
    plot_b = H - PAD_B
    parts.append(f'<line class="axis" x1="{PAD_L}" y1="{plot_b}" x2="{W - PAD_R}" y2="{plot_b}"/>')
    parts.append(f'<line class="grid" x1="{PAD_L}" y1="{PAD_T}" x2="{W - PAD_R}" y2="{PAD_T}"/>')
    parts.append(f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 4}" text-anchor="end">{escape(top)}</text>')
    parts.append(f'<text class="tick" x="{PAD_L - 4}" y="{plot_b}" text-anchor="end">0</text>')
    for x, text in xlabels:
        parts.append(f'<text class="tick" x="{x:.1f}" y="{H - 6}" text-anchor="middle">{escape(text)}</text>')
    parts.extend(body)
    parts.append("</svg>")
    return Markup("".join(parts))


def _xlabels(starts: Sequence[datetime], x_of: Callable[[int], float], fmt: str) -> list[tuple[float, str]]:
    n = len(starts)
    if n == 0:
        return []
    picks = sorted({0, n // 2, n - 1}) if n > 2 else list(range(n))
    return [(x_of(i), starts[i].strftime(fmt)) for i in picks]


def stacked_bars(starts: Sequence[datetime], series: dict[str, Sequence[float]], *, label: str, time_fmt: str,
                 unit: str = "") -> Markup:
    """One bar per time bucket, stacked by series (e.g. decisions per tier)."""
    n = len(starts)
    names = list(series)
    totals = [sum(series[s][i] for s in names) for i in range(n)]
    top = max(totals, default=0) or 1
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    bw = plot_w / max(n, 1)
    body = []
    for i in range(n):
        y = H - PAD_B
        for k, name in enumerate(names):
            v = series[name][i]
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            body.append(f'<rect class="s{k % 8}" x="{PAD_L + i * bw + 0.5:.1f}" y="{y:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                        f'height="{h:.1f}" data-series="{escape(name)}" data-value="{v:g}"><title>'
                        f'{escape(starts[i].strftime(time_fmt))} — {escape(name)}: {v:g}{escape(unit)}</title></rect>')
    return _frame(label, _fmt_num(top), _xlabels(starts, lambda i: PAD_L + (i + 0.5) * bw, time_fmt), body, cls="bars")


def lines(starts: Sequence[datetime], series: dict[str, Sequence[float | None]], *, label: str, time_fmt: str,
          top: float | None = None, percent: bool = False) -> Markup:
    """One polyline per series over the time buckets; None leaves a gap."""
    n = len(starts)
    values = [v for s in series.values() for v in s if v is not None]
    top = top if top is not None else (max(values, default=0) or 1)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    step = plot_w / max(n - 1, 1)
    x_of = (lambda i: PAD_L + i * step) if n > 1 else (lambda i: PAD_L + plot_w / 2)
    body = []
    for k, (name, vals) in enumerate(series.items()):
        runs: list[list[str]] = [[]]
        for i, v in enumerate(vals):
            if v is None:
                runs.append([])
                continue
            x, y = x_of(i), H - PAD_B - plot_h * min(v / top, 1.0)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            shown = f"{v:.1%}" if percent else f"{v:.3f}"
            body.append(f'<circle class="s{k % 8}" cx="{x:.1f}" cy="{y:.1f}" r="2.5" data-series="{escape(name)}" '
                        f'data-value="{v:.6f}"><title>{escape(starts[i].strftime(time_fmt))} — {escape(name)}: '
                        f'{shown}</title></circle>')
        for run in runs:
            if len(run) > 1:
                body.insert(0, f'<polyline class="line s{k % 8}" points="{" ".join(run)}"/>')
    top_text = f"{top:.0%}" if percent else f"{top:.2g}"
    return _frame(label, top_text, _xlabels(starts, x_of, time_fmt), body, cls="lines")


def meter(value: float, *, label: str, cls: str = "") -> Markup:
    """A horizontal bar for a share in [0, 1] (a probability, a recall) with its number."""
    v = min(max(value, 0.0), 1.0)
    return Markup(f'<svg class="meter {escape(cls)}" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
                  f'aria-label="{escape(label)}: {v:.0%}"><rect class="track" width="100" height="8"/>'
                  f'<rect class="fill" width="{v * 100:.1f}" height="8"/></svg>')
