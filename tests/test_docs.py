"""The documentation under docs/: generated pages match their generators, every key says what it does,
every relative link resolves (files and #anchors)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from frontdesk import reference
from frontdesk.cli.reference import cli_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

GENERATED = {
    "config": reference.config_reference,
    "training": reference.training_reference,
    "cli": cli_reference,
}


@pytest.mark.parametrize("kind", sorted(GENERATED))
def test_generated_page_is_up_to_date(kind: str) -> None:
    page = DOCS / f"{kind}.md"
    expected = GENERATED[kind]()
    assert page.is_file(), f"docs/{kind}.md is missing: run `{reference.REGENERATE.format(kind=kind)}`"
    assert page.read_text(encoding="utf-8") == expected, (
        f"docs/{kind}.md is out of date with the code: run `{reference.REGENERATE.format(kind=kind)}`")


def test_every_config_and_training_key_has_a_description() -> None:
    missing = reference.missing_descriptions(reference.config_rows()) + reference.missing_descriptions(
        reference.training_rows())
    assert missing == [], f"add Field(description=...) to: {missing}"


def test_config_reference_covers_nested_keys() -> None:
    paths = {r.path for r in reference.config_rows()}
    # keys several levels down, a mapping of models, a list of models and the free mappings expanded from other models
    for key in ("model", "server.port", "labels.<label>.queue", "rules[].keywords", "gates.<tier>.threshold",
                "router.fallback", "targets.signals.requires_human.rules", "extract.mask.patterns[].type",
                "auth.keys[].scopes", "llm.deadline_s", "shared.url", "actions.<action>.webhook"):
        assert key in paths
    rows = {r.path: r for r in reference.config_rows()}
    assert rows["server.port"].default == "8080" and "65535" in rows["server.port"].type
    assert rows["targets.review_queue.queue"].default == "human-review"  # a nested model's default instance
    assert rows["model"].default == "required"


def test_reference_command_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "config.md"
    res = subprocess.run([sys.executable, "-m", "frontdesk", "reference", "config", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert out.read_text(encoding="utf-8") == reference.config_reference()
    res = subprocess.run([sys.executable, "-m", "frontdesk", "reference", "nope"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "config | training | cli" in res.stderr


# -- links -----------------------------------------------------------------------------------------
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`+[^`]*`+")


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (except - and _), spaces → hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            base = github_anchor(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    text = _CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    return _LINK.findall(text)


def test_anchor_rule_matches_github() -> None:
    assert github_anchor("New intents — `/ui/discover`") == "new-intents--uidiscover"
    assert github_anchor("`linear` (LinearParams)") == "linear-linearparams"
    assert github_anchor("Streams: `frontdesk consume`") == "streams-frontdesk-consume"


def test_relative_links_resolve() -> None:
    pages = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
    broken = []
    for page in pages:
        for target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no file {file_part})")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no heading #{anchor} in {dest.name})")
    assert broken == [], "broken links:\n" + "\n".join(broken)


def test_every_page_is_linked_from_the_index() -> None:
    index = set(links(DOCS / "index.md"))
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "index.md" and p.name not in index]
    assert missing == [], f"add these pages to docs/index.md: {missing}"
