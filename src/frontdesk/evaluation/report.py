"""The HTML evaluation report: trade-off curve, reliability diagram, per-label F1, confusions.

Plots are rendered with matplotlib (the ``report`` extra) to PNG and embedded in one
self-contained HTML file, so the report can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from frontdesk.errors import ConfigError
from frontdesk.evaluation.evaluate import EvalReport
from frontdesk.cascade.router import Router

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>frontdesk evaluation — {{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; } h2 { margin-top: 2rem; } .plots img { max-width: 49%; }
</style></head><body>
<h1>frontdesk evaluation — {{ title }}</h1>
<p>{{ n }} messages · tiers: {{ tiers }} · objective: {{ objective }}</p>
<h2>Summary</h2>
<table>{% for k, v in summary %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<h2>Operating points (validation thresholds applied to this split)</h2>
<table><tr><th>budget</th><th>threshold</th><th>escalation</th><th>accuracy on accepted</th></tr>
{% for p in ops %}<tr><td>≤ {{ "%.0f"|format(p.target_escalation*100) }}%</td><td>{{ "%.3f"|format(p.threshold) }}</td>
<td>{{ "%.1f"|format(p.escalation_rate*100) }}%</td><td>{{ "%.2f"|format(p.accepted_accuracy*100) }}%</td></tr>{% endfor %}</table>
<div class="plots"><img alt="accuracy vs escalation" src="data:image/png;base64,{{ curve_png }}">
<img alt="reliability diagram" src="data:image/png;base64,{{ reliability_png }}"></div>
{% if oos_tiers %}<h2>Out of scope</h2>
<p>{% for t in oos_tiers %}tier '{{ t.name }}': out of scope when score ≥ {{ "%.4f"|format(t.threshold) }}{% if t.override %} (set in the config; fitted {{ "%.4f"|format(t.fitted) }}){% endif %}, {{ t.combiner }}{% if not loop.last %} · {% endif %}{% endfor %}.
Out-of-scope messages go to {{ oos_target }}; {{ "%.1f"|format(oos_flagged * 100) }}% of this split was called out of scope.</p>
{% if oos_curve %}<table><tr><th>threshold (last detector)</th><th>in-scope accuracy</th><th>OOS recall</th><th>in-scope rejected</th></tr>
{% for p in oos_curve %}<tr><td>{{ "%.3f"|format(p.threshold) }}</td><td>{{ pct(p.in_scope_accuracy) }}</td><td>{{ pct(p.oos_recall) }}</td><td>{{ pct(p.in_scope_rejected) }}</td></tr>{% endfor %}</table>{% endif %}{% endif %}
<h2>Most confused label pairs</h2>
<table><tr><th>true</th><th>predicted</th><th>count</th></tr>
{% for c in confusions %}<tr><td>{{ c.true }}</td><td>{{ c.predicted }}</td><td>{{ c.count }}</td></tr>{% endfor %}</table>
<h2>Per-label F1 (worst first)</h2>
<table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{% for m in per_label %}<tr><td>{{ m.label }}</td><td>{{ "%.3f"|format(m.precision) }}</td><td>{{ "%.3f"|format(m.recall) }}</td>
<td>{{ "%.3f"|format(m.f1) }}</td><td>{{ m.support }}</td></tr>{% endfor %}</table>
</body></html>
"""


def _png(fig) -> str:  # noqa: ANN001 - a matplotlib Figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_html_report(report: EvalReport, router: Router, path: str | Path, *, title: str = "") -> Path:
    """Render ``report`` into a self-contained HTML file at ``path``."""
    try:
        import jinja2
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("HTML reports need the report extra: pip install 'frontdesk[report]'", field="--report") from exc

    first = router.primary.name
    curve = router.curves.get(first)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if curve is not None:
        ax.plot([p.escalation_rate * 100 for p in curve.points], [p.accepted_accuracy * 100 for p in curve.points],
                label="validation curve", color="#888")
        ax.scatter([curve.chosen.escalation_rate * 100], [curve.chosen.accepted_accuracy * 100], color="#d62728",
                   zorder=3, label="chosen operating point (validation)")
    ax.scatter([p.escalation_rate * 100 for p in report.operating_points],
               [p.accepted_accuracy * 100 for p in report.operating_points], color="#1f77b4", zorder=3,
               label="standard points on this split")
    ax.set_xlabel("escalation rate (%)"), ax.set_ylabel("accuracy on accepted (%)")
    ax.set_title(f"accuracy vs escalation — tier '{first}'"), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    curve_png = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    bins = [b for b in report.reliability if b.count]
    ax.bar([(b.lower + b.upper) / 2 for b in bins], [b.accuracy for b in bins], width=1 / len(report.reliability) * 0.9,
           color="#1f77b4", alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="#888", label="perfect calibration")
    ax.set_xlabel("confidence"), ax.set_ylabel("accuracy"), ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_title(f"reliability — tier '{first}' (ECE {report.ece:.3f})"), ax.legend(fontsize=8)
    reliability_png = _png(fig)
    plt.close(fig)

    summary = [(k, "—" if v is None else f"{v:.4f}") for k, v in report.summary().items()]
    summary.append(("tier share", ", ".join(f"{t}: {s:.1%}" for t, s in report.tier_share.items())))
    if report.llm is not None:
        summary.append(("LLM tier: acceptance policy", report.llm.policy))
        summary.append(("LLM tier: outcomes", ", ".join(f"{k}: {v:.1%}" for k, v in report.llm.outcomes.items()) or "—"))
        summary.append(("LLM tier: gain over the classifier's guess",
                        f"{report.llm.gain * 100:+.2f} points ({report.llm.accuracy_without:.2%} without the LLM)"))
    if (g := report.guarantee) is not None:
        promise = f"accuracy on accepted ≥ {g.target_accuracy:.3f} with probability ≥ {g.probability:.2f}"
        here = "—" if g.accepted_accuracy is None else f"{g.accepted_accuracy:.4f} [{g.interval[0]:.4f}, {g.interval[1]:.4f}]"
        status = f"certified at threshold {g.threshold:.4f}" if g.in_force else g.note
        summary.append((f"guarantee ({g.tier})", f"{promise}: {status}; here {here} on {g.accepted} accepted"))
    oos_tiers = [{"name": name, "threshold": router.oos_threshold(name), "fitted": det.threshold_,
                  "override": router.oos_threshold(name) != det.threshold_, "combiner": det.info_.get("combiner", "")}
                 for name, det in router.detectors.items() if router.oos_detector(name) is not None]
    html = jinja2.Environment(autoescape=True).from_string(_TEMPLATE).render(
        oos_tiers=oos_tiers, oos_curve=report.oos_curve, oos_flagged=report.oos_flagged_rate or 0.0,
        oos_target=f"the label '{router.unknown_label}'" if router.unknown_label else "human review (reason 'out of scope')",
        pct=lambda v: "—" if v is None else f"{v * 100:.1f}%",
        title=title or router.meta.get("dataset", "model"), n=report.n, tiers=" → ".join(t.name for t in router.tiers),
        objective=curve.objective if curve else "—", summary=summary, ops=report.operating_points,
        curve_png=curve_png, reliability_png=reliability_png, confusions=report.confusions,
        per_label=sorted(report.per_label, key=lambda m: m.f1),
    )
    out = Path(path)
    out.write_text(html, encoding="utf-8")
    return out
