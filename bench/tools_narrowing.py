"""How many tool-schema tokens per request does intent-based tool narrowing save?

Builds synthetic tool catalogues (300 and 741 tools) over the banking77 label names, draws 200
decisions (1 or 2 labels each, seeded), and compares the schema tokens of sending every tool with
sending only the tools selected for the decided labels, capped at N=10 (intent order, and re-ranked
by TF-IDF similarity to a synthetic message). Writes the table into BENCHMARKS.md between
``<!-- tools:start -->`` and ``<!-- tools:end -->``.

    python bench/tools_narrowing.py [--decisions 200] [--cap 10] [--seed 0]

Token counts are :func:`frontdesk.routing.tools.schema_tokens`'s offline approximation (~4 chars/token);
the reduction factor is a ratio and does not depend much on it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCHMARKS, ROOT, stamp, table, write_section  # noqa: E402

from frontdesk.routing.tools import schema_tokens, synthetic_catalog  # noqa: E402

SIZES = (300, 741)
PHRASES = [
    "Hi, I have a problem with {topic}, can you help?",
    "question about {topic} please",
    "I need help: {topic}. It has been three days.",
    "Can you tell me more about {topic} on my account?",
]


def banking77_labels() -> tuple[list[str], str]:
    """The banking77 label names, or 77 generated ones when the dataset is not there."""
    root = Path(os.environ.get("FRONTDESK_DATA", ROOT.parent / "shared" / "datasets"))
    path = root / "banking77" / "labels.txt"
    if path.is_file():
        labels = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        if labels:
            return labels, "banking77 label names"
    return [f"intent_{i:02d}_topic" for i in range(77)], "77 generated label names (banking77 not found)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decisions", type=int, default=200)
    ap.add_argument("--cap", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args(argv)

    labels, source = banking77_labels()
    rng = random.Random(args.seed)
    decisions = []
    for _ in range(args.decisions):
        chosen = rng.sample(labels, 2 if rng.random() < 0.3 else 1)
        text = rng.choice(PHRASES).format(topic=" and ".join(c.replace("_", " ").lower() for c in chosen))
        decisions.append((chosen, text))
    n_multi = sum(len(c) > 1 for c, _ in decisions)

    rows = []
    for size in SIZES:
        catalog = synthetic_catalog(labels, n=size, seed=args.seed)
        all_tokens = schema_tokens(catalog)
        rerank = catalog.lexical_reranker()
        modes = [("intents, no cap", None, None), (f"intents, cap {args.cap}", args.cap, None),
                 (f"intents + rerank, cap {args.cap}", args.cap, rerank)]
        for mode, cap, reranker in modes:
            tokens, counts, ms = [], [], []
            for chosen, text in decisions:
                t0 = time.perf_counter()
                tools = catalog.select(chosen, text, max_tools=cap, rerank=reranker)
                ms.append((time.perf_counter() - t0) * 1000)
                tokens.append(schema_tokens(tools))
                counts.append(len(tools))
            mean_tokens = statistics.fmean(tokens)
            rows.append([
                str(size), mode, f"{all_tokens:,}", f"{statistics.fmean(counts):.1f}", f"{mean_tokens:,.0f}",
                f"{all_tokens / mean_tokens:.0f}×", f"{all_tokens - mean_tokens:,.0f}", f"{statistics.median(ms):.2f}",
            ])
    headers = [
        "catalogue (tools)", "selection", "all-tools schema tokens", "tools sent (mean)", "narrowed tokens (mean)",
        "reduction", "tokens saved / request", "select p50 (ms)",
    ]
    md = table(headers, rows)
    cmd = "python bench/tools_narrowing.py" + (f" --decisions {args.decisions}" if args.decisions != 200 else "")
    body = "\n\n".join([
        "### Tool narrowing: schema tokens per request",
        f"Synthetic catalogues over the {source} (~5 % general `*` tools, the rest spread over the labels, "
        f"2–6 parameters each); {args.decisions} seeded decisions ({n_multi} with 2 labels), cap N={args.cap}. "
        "Tokens: `frontdesk.routing.tools.schema_tokens`, an offline approximation (~4 chars/token, no tiktoken); "
        "the reduction factor is a ratio and barely depends on it. `select` latency includes re-ranking.",
        md,
        stamp(cmd),
    ])
    print(md)
    if not args.no_write:
        write_section(BENCHMARKS, "tools", body)
        print(f"\nwritten to {BENCHMARKS}")


if __name__ == "__main__":
    main()
