"""The CLI end to end, as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "frontdesk", *args], capture_output=True, text=True, input=stdin, timeout=300)


@pytest.fixture(scope="module")
def model(support_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model"
    res = run("train", "--data", str(support_dir), "--out", str(out), "--max-escalation", "0.2", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["labels"] >= 11 and summary["operating_point"]["linear"]["escalation_rate"] <= 0.2 + 1e-9
    return out


def test_eval_json_has_the_documented_keys(model: Path, support_dir: Path, tmp_path: Path) -> None:
    res = run("eval", "--model", str(model), "--data", str(support_dir), "--json", "--report", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    for key in ("accuracy", "macro_f1", "ece", "escalation_rate", "accepted_accuracy", "tier_share", "latency_ms", "operating_points", "exact_match", "per_label_f1"):
        assert key in report
    assert set(report["latency_ms"]) >= {"p50", "p95", "p99"}
    assert set(report["operating_points"][0]) >= {"escalation_rate", "accepted_accuracy", "threshold"}
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_route_args_and_stdin(model: Path) -> None:
    res = run("route", "--model", str(model), "I need to reset my password, locked out")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["labels"] and d["tier"] in ("linear", "human")
    res = run("route", "--model", str(model), stdin="where is my order\n\ncancel my plan please\n")
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert res.returncode == 0 and len(lines) == 2


def test_errors_are_one_clear_line(model: Path, tmp_path: Path) -> None:
    res = run("route", "--model", str(tmp_path / "missing"), "hello")
    assert res.returncode == 2 and "not a frontdesk model directory" in res.stderr and "Traceback" not in res.stderr
    res = run("route", "--model", str(model), "   ")
    assert res.returncode == 1 and "empty" in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "labels": ["a"]}\n{oops\n')
    res = run("train", "--data", str(bad), "--out", str(tmp_path / "m"))
    assert res.returncode == 2 and "bad.jsonl:2: invalid JSON" in res.stderr
    res = run("train", "--data", str(bad), "--out", str(tmp_path / "m"), "--target-accuracy", "0.9", "--max-escalation", "0.1")
    assert res.returncode == 2 and "not both" in res.stderr


def test_demo_runs_offline() -> None:
    res = run("demo", "--json")
    assert res.returncode == 0, res.stderr
    decisions = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(decisions) == 8 and all(d["labels"] for d in decisions)
    res = run("demo")
    assert res.returncode == 0 and "frontdesk demo" in res.stdout and "Held-out test" in res.stdout


def test_init_and_route_through_the_pipeline(model: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "frontdesk.yaml"
    res = run("init", str(cfg))
    assert res.returncode == 0 and cfg.exists()
    assert run("init", str(cfg)).returncode == 2  # refuses to overwrite
    cfg.write_text(cfg.read_text().replace("model: model", f"model: {model}"))
    res = run("route", "--config", str(cfg), "--sender", "u1", "<p>I will <b>sue</b> you over this charge</p>")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]  # one JSON shape on stdout: the stdout sink is off
    assert len(lines) == 1 and set(lines[0]) == {"decision", "targets", "delivery_errors"}
    out = lines[0]
    assert out["decision"]["labels"] == ["legal_or_complaint"] and out["decision"]["tier"] == "guardrails"
    assert out["targets"][0]["parent_id"] == out["decision"]["id"]
    assert run("route", "hello").returncode == 2  # neither --model nor --config


def run_bytes(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "frontdesk", *args], capture_output=True, input=stdin, timeout=300)


def test_stdin_errors_name_the_line_and_the_rest_is_routed(model: Path) -> None:
    res = run_bytes("route", "--model", str(model), stdin=b"where is my order\n\xff\xfe broken\ncancel my plan please\n")
    assert res.returncode == 1
    assert [json.loads(x)["text"] for x in res.stdout.decode().splitlines()] == ["where is my order", "cancel my plan please"]
    assert "stdin line 2: not valid UTF-8 (byte 0xff at column 1)" in res.stderr.decode()


def test_route_table_format(model: Path) -> None:
    res = run("route", "--model", str(model), "--format", "table", "where is my order 5521", "I will sue you")
    assert res.returncode == 0, res.stderr
    assert "labels" in res.stdout and "where is my order 5521" in res.stdout and not res.stdout.lstrip().startswith("{")
    assert run("route", "--model", str(model), "--format", "yaml", "hi").returncode == 2


def test_version_and_help_without_python_types() -> None:
    from frontdesk import __version__

    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"frontdesk {__version__}"
    res = run("route", "--help")
    assert res.returncode == 0 and "--model PATH" in res.stdout
    assert "<str>" not in res.stdout and "<bool>" not in res.stdout and "<path>" not in res.stdout


def test_error_text_is_printed_whole(tmp_path: Path) -> None:
    """Rich markup must not eat bracketed text, such as the hint pip install 'frontdesk[llm]' or a path."""
    res = run("route", "--model", str(tmp_path / "model[llm]"), "hello")
    assert res.returncode == 2 and f"{tmp_path / 'model[llm]'}" in res.stderr
