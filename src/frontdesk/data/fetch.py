"""The public benchmark datasets (BANKING77, CLINC150, SNIPS, MixSNIPS), fetched and converted reproducibly.

Each dataset is pinned to one commit of the public GitHub repository that publishes it. :func:`fetch_dataset`
downloads the listed files from ``https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>`` (or a
mirror laid out the same way, ``base_url``), checks each file's size, SHA-256 and git blob id, converts them
to frontdesk's layout — ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (rows
``{"text": ..., "labels": [...]}``), ``labels.txt`` (sorted), the upstream licence file(s) verbatim and a
``SOURCE.md`` saying where it all came from — and puts the folder in place in one step (a half-written
dataset is never visible). :func:`convert_dataset` does the same from files downloaded by hand (air-gapped
machines). The conversion rules are the ones the reference copies were made with; the output is byte for
byte the same.

Usage::

    from frontdesk.data.fetch import fetch_dataset
    path = fetch_dataset("banking77", "datasets")   # -> datasets/banking77

From the shell: ``frontdesk datasets list | show NAME | fetch NAME | convert NAME --from DIR``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import quote

from frontdesk.common.atomic import replace_directory, staging_path
from frontdesk.common.progress import Progress
from frontdesk.errors import ConfigError, DataError

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
ENV_DATA = "FRONTDESK_DATA"
SPLITS = ("train", "validation", "test")
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0

Row = tuple[str, list[str]]
"""One converted example: (text, labels)."""
Splits = dict[str, list[Row]]


class DownloadError(DataError):
    """A pinned file could not be downloaded; ``url`` is the file, ``offline`` says the host was unreachable."""

    def __init__(self, message: str, *, url: str, offline: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.offline = offline


@dataclass(frozen=True)
class SourceFile:
    """One upstream file, pinned: where it lives (repository, commit, path) and what its bytes must be.

    ``save_as`` is its path inside a download folder (default: its path in the repository, so a clone of
    the repository at the commit works as ``--from``); ``copy_to`` names the copy in the converted dataset
    (licence files), None for data files.
    """

    repo: str
    commit: str
    path: str
    size: int
    sha256: str
    git_blob: str
    save_as: str = ""
    copy_to: str | None = None

    @property
    def local(self) -> str:
        return self.save_as or self.path

    def url(self, base_url: str | None = None) -> str:
        base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        return f"{base}/{self.repo}/{self.commit}/{quote(self.path)}"


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark dataset: its pinned upstream files, licence, expected sizes and converter."""

    name: str
    title: str
    repo: str
    commit: str
    files: tuple[SourceFile, ...]
    license: str
    license_notes: tuple[str, ...]
    cite: str
    sizes: Mapping[str, int]
    n_labels: int
    decisions: tuple[str, ...]
    convert: Callable[[Path], Splits] = field(repr=False)

    @property
    def download_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def source_url(self) -> str:
        return f"https://github.com/{self.repo}/tree/{self.commit}"


# -- reading the upstream files -------------------------------------------------------------------------

def _norm(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped; otherwise verbatim."""
    return re.sub(r"\s+", " ", text).strip()


def _read(root: Path, path: str) -> str:
    p = root / path
    try:
        return p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError("missing", path=p) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason} at byte {exc.start})", path=p) from None


def _lines(root: Path, path: str) -> list[str]:
    """The lines of a text file (``\\n`` ends a line; a trailing ``\\r`` is dropped; no final empty line)."""
    text = _read(root, path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _row(text: str, labels: list[str], path: Path, line: int) -> Row:
    text = _norm(text)
    if not text:
        raise DataError("empty text", path=path, line=line)
    if not labels or any(not lab for lab in labels):
        raise DataError(f"empty label in {labels!r}", path=path, line=line)
    return text, labels


def _paired(root: Path, text_path: str, label_path: str, split_labels: Callable[[str], list[str]]) -> list[Row]:
    """The ``seq.in`` / ``label`` format: line i of one file is the text, line i of the other its label(s)."""
    texts, labels = _lines(root, text_path), _lines(root, label_path)
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} lines but {root / label_path} has {len(labels)}: the two files must pair up line by line",
                        path=root / text_path)
    return [_row(t, split_labels(lab.strip()), root / text_path, i) for i, (t, lab) in enumerate(zip(texts, labels), 1)]


# -- converters: one per dataset, each the exact rule its SOURCE.md states ------------------------------------

def carve_validation(rows: Sequence[Row], *, fraction: float = 0.1, seed: int = 42) -> tuple[list[Row], list[Row]]:
    """Split ``rows`` into (train, validation), stratified by label, deterministic and order-keeping.

    Per label with n rows, ``round(n * fraction)`` (Python's round: half to even) rows go to validation:
    those with the smallest SHA-256 of ``f"{seed}\\x1f{label}\\x1f{index}\\x1f{text}"`` (index = 0-based
    position in ``rows``; text already normalised). Both parts keep the source order.
    """
    by_label: dict[str, list[int]] = {}
    for i, (_text, labels) in enumerate(rows):
        by_label.setdefault(labels[0], []).append(i)
    chosen: set[int] = set()
    for label, idx in by_label.items():
        def rank(i: int, label: str = label) -> str:
            return hashlib.sha256(f"{seed}\x1f{label}\x1f{i}\x1f{rows[i][0]}".encode()).hexdigest()
        chosen.update(sorted(idx, key=rank)[: round(len(idx) * fraction)])
    train = [r for i, r in enumerate(rows) if i not in chosen]
    validation = [r for i, r in enumerate(rows) if i in chosen]
    return train, validation


_B77 = "banking_data"


def _banking77_csv(root: Path, path: str) -> list[Row]:
    p = root / path
    reader = csv.reader(io.StringIO(_read(root, path), newline=""))
    header = next(reader, None)
    if header != ["text", "category"]:
        raise DataError(f"header is {header!r}, expected ['text', 'category']", path=p, line=1)
    rows = []
    for record in reader:
        if len(record) != 2:
            raise DataError(f"{len(record)} fields, expected 2 (text, category)", path=p, line=reader.line_num)
        rows.append(_row(record[0], [record[1]], p, reader.line_num))
    return rows


def convert_banking77(root: Path) -> Splits:
    """BANKING77: train.csv/test.csv (``text,category``); validation = 10 % of train, see :func:`carve_validation`."""
    source_train = _banking77_csv(root, f"{_B77}/train.csv")
    test = _banking77_csv(root, f"{_B77}/test.csv")
    try:
        categories = json.loads(_read(root, f"{_B77}/categories.json"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=root / _B77 / "categories.json", line=exc.lineno) from None
    seen = {lab for _t, labs in source_train + test for lab in labs}
    if not isinstance(categories, list) or set(categories) != seen:
        raise DataError(f"the categories listed do not match the {len(seen)} labels in train.csv/test.csv",
                        path=root / _B77 / "categories.json")
    train, validation = carve_validation(source_train)
    return {"train": train, "validation": validation, "test": test}


def convert_clinc150(root: Path) -> Splits:
    """CLINC150 ``data_full.json``: in-scope examples, then the ``oos_*`` ones (label ``oos``), per split."""
    path = "data/data_full.json"
    try:
        data = json.loads(_read(root, path))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=root / path, line=exc.lineno) from None
    out: Splits = {}
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows: list[Row] = []
        for k in (key, f"oos_{key}"):
            items = data.get(k) if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise DataError(f"no list {k!r}: expected the keys train/val/test and oos_train/oos_val/oos_test", path=root / path)
            for n, item in enumerate(items):
                if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                    raise DataError(f"{k}[{n}] is not a [text, label] pair", path=root / path)
                rows.append(_row(item[0], [item[1]], root / path, n + 1))
        out[split] = rows
    return out


def convert_snips(root: Path) -> Splits:
    """SNIPS (Goo et al. 2018 split): ``data/snips/{train,valid,test}/{seq.in,label}``, one intent per line."""
    return {split: _paired(root, f"data/snips/{src}/seq.in", f"data/snips/{src}/label", lambda lab: [lab])
            for split, src in (("train", "train"), ("validation", "valid"), ("test", "test"))}


def _multi(label: str) -> list[str]:
    """``A#B`` → ``["A", "B"]`` (source order kept; a repeated intent kept once)."""
    return list(dict.fromkeys(label.split("#")))


def convert_mixsnips(root: Path) -> Splits:
    """MixSNIPS_clean: ``data/MixSNIPS_clean/{train,dev,test}/{seq.in,label}``, intents joined by ``#``."""
    base = "data/MixSNIPS_clean"
    return {split: _paired(root, f"{base}/{src}/seq.in", f"{base}/{src}/label", _multi)
            for split, src in (("train", "train"), ("validation", "dev"), ("test", "test"))}


# -- the registry ------------------------------------------------------------------------------------------

_SONOS = ("sonos/nlu-benchmark", "b86ac7f1577868c42158d0dec77db50956046696")
_SONOS_LICENSE = SourceFile(*_SONOS, "LICENSE", 6555, "36ffd9dc085d529a7e60e1276d73ae5a030b020313e6c5408593a6ae2af39673",
                            "670154e3538863b2d9891fd5483160fbdfc89164", save_as="LICENSE.sonos-nlu-benchmark",
                            copy_to="LICENSE.sonos-nlu-benchmark")


def _files(repo: str, commit: str, rows: Sequence[tuple[str, int, str, str]]) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(repo, commit, path, size, sha, blob) for path, size, sha, blob in rows)


_B77_REPO = ("PolyAI-LDN/task-specific-datasets", "57ec275d8078af65b7731c2a98be812d844a6d6b")
_CLINC_REPO = ("clinc/oos-eval", "828f8093932c8fe6ca7936c3d2e52903b1c523de")
_SNIPS_REPO = ("MiuLab/SlotGated-SLU", "61f0307c729b1fad479ef1de94aa5ac5dee601b0")
_MIX_REPO = ("yizhen20133868/GL-GIN", "df2bcaf0e9229838707dc9d63a4fe6934b9be307")

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(
        name="banking77",
        title="BANKING77 (PolyAI)",
        repo=_B77_REPO[0], commit=_B77_REPO[1],
        files=_files(*_B77_REPO, [
            ("banking_data/train.csv", 839073, "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
             "98e2543cf482d0dca7bfb175ebe35d98efad95be"),
            ("banking_data/test.csv", 239961, "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
             "799687a8367359432985b8b13d85a2baf73f92dd"),
            ("banking_data/categories.json", 2036, "53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63",
             "cdd2a5c77a4079a455f8fb7e751d1ecee0e2a5a4"),
        ]) + (SourceFile(*_B77_REPO, "LICENSE", 18650, "7e7170e3cebf88a9f60c7b8421418323c09304da1af4d5e90f4da1dc1c8a2661",
                         "2f244ac814036ecd9ba9f69782e89ce6b1dca9eb", copy_to="LICENSE"),),
        license="CC BY 4.0",
        license_notes=("Creative Commons Attribution 4.0 International, the repository's LICENSE file (copied as LICENSE); "
                       "its README: 'The datasets shared on this repository are licensed under the license found in the LICENSE file.'",),
        cite="Casanueva et al. (2020), Efficient Intent Detection with Dual Sentence Encoders (NLP4ConvAI).",
        sizes={"train": 9000, "validation": 1003, "test": 3080}, n_labels=77,
        decisions=(
            "train.csv / test.csv parsed with Python csv (header `text,category`).",
            "The source has no validation split: validation = 10 % of the source train set, carved per label (stratified): "
            "round(n * 0.1) examples of each label (Python's round, half to even), those with the smallest "
            "SHA-256 of `42\\x1f<label>\\x1f<index>\\x1f<text>` (index = 0-based row of train.csv after the header, text "
            "whitespace-normalised); the rest stays in train. Source order is kept in both.",
            "Text: whitespace runs collapsed to one space and ends stripped; otherwise verbatim (case and punctuation kept).",
            "Labels kept exactly as in the source, including the one mixed-case label `Refund_not_showing_up`.",
            "categories.json (77 categories) is checked to list exactly the labels found in train.csv and test.csv.",
        ),
        convert=convert_banking77,
    ),
    DatasetSpec(
        name="clinc150",
        title="CLINC150 / OOS-eval 'full' (clinc/oos-eval data_full.json)",
        repo=_CLINC_REPO[0], commit=_CLINC_REPO[1],
        files=_files(*_CLINC_REPO, [
            ("data/data_full.json", 2495390, "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
             "7a7b26c5f2dfbbf213f3e67d2dd0727e1af545aa"),
        ]) + (SourceFile(*_CLINC_REPO, "LICENSE", 19467, "e6bc9e9c474700b708f568bac9e5a8a9bcb2b1dad53442f5ba449fcb848b8e76",
                         "1a16e05564d2aaa880bbe9e506a0a0226d8742cc", copy_to="LICENSE"),),
        license="CC BY 3.0",
        license_notes=("Creative Commons Attribution 3.0 Unported, the repository's LICENSE file (copied as LICENSE).",),
        cite="Larson et al. (2019), An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction (EMNLP-IJCNLP).",
        sizes={"train": 15100, "validation": 3100, "test": 5500}, n_labels=151,
        decisions=(
            "Source split keys: train/val/test (150 in-scope intents) and oos_train/oos_val/oos_test.",
            "Out-of-scope examples are included and labelled `oos` in every split: oos_train -> train, "
            "oos_val -> validation, oos_test -> test.",
            "In-scope examples first (source order), then the oos examples (source order).",
            "Text: whitespace runs collapsed, ends stripped; otherwise verbatim (the source is lower-cased).",
            "Labels kept as in the source (lower snake_case); labels.txt has 151 entries (150 intents + `oos`).",
        ),
        convert=convert_clinc150,
    ),
    DatasetSpec(
        name="snips",
        title="SNIPS 7-intent benchmark (standard Goo et al. 2018 split)",
        repo=_SNIPS_REPO[0], commit=_SNIPS_REPO[1],
        files=_files(*_SNIPS_REPO, [
            ("data/snips/train/seq.in", 617079, "04ad1e3f2121d83c6478f9a4b17d2dbdc21d06d6127f73cb7af835ed733f9855",
             "cfec7c042b91d5380cec594829eb72391ac8a94f"),
            ("data/snips/train/label", 184532, "bfd7df6cf9dd76c5da5d8b61bc85f90386197bdd3d7510c1d324c051537b962f",
             "7545e21c5f07076591730cf394b54987b43c22f4"),
            ("data/snips/valid/seq.in", 33629, "64e0f6d8ad8aab3a3828164d7d53731a0993d3ca1aed437ceaca6d3d568d410e",
             "73a30322be9f41b5b1ed02d58a13f67f5590d141"),
            ("data/snips/valid/label", 9900, "9c1dd041216f647bcfca838aaf1a48eb5781e4404256d31ff07cd38a5436c52f",
             "4b7e9b39a727534438021418adda4f78e4244d9d"),
            ("data/snips/test/seq.in", 33121, "c1e341173fcea2951a8ca371956a6f81c76de87b9583c62eb87edd6158fa3a7c",
             "2ab04b8803900b6d9f8a92fd3ebb8a5803d2a78d"),
            ("data/snips/test/label", 10120, "37a26da3ad079bb41c42c85a3a8f827eb47efec4c5917ce5d08f4b2736e4f830",
             "b86c4e060ff09fc8a44441a7895194bef577b415"),
        ]) + (_SONOS_LICENSE,),
        license="CC0 1.0",
        license_notes=(
            "MiuLab/SlotGated-SLU has no LICENSE file and states no license for the data.",
            "The utterances come from sonos/nlu-benchmark (`2017-06-custom-intent-engines`), whose LICENSE file "
            f"@ `{_SONOS[1][:12]}` is CC0 1.0 Universal (copied as LICENSE.sonos-nlu-benchmark).",
        ),
        cite="Coucke et al. (2018), Snips Voice Platform (arXiv:1805.10190); split: Goo et al. (2018), Slot-Gated Modeling "
             "for Joint Slot Filling and Intent Prediction (NAACL).",
        sizes={"train": 13084, "validation": 700, "test": 700}, n_labels=7,
        decisions=(
            "The standard SNIPS intent split of Goo et al. (NAACL 2018), 13,084 / 700 / 700, as published in "
            "MiuLab/SlotGated-SLU `data/snips/{train,valid,test}/{seq.in,label}`; validation = `valid`.",
            "Text = the `seq.in` line (tokenised and lower-cased by the split's publishers). Whitespace runs collapsed, "
            "ends stripped (several source lines have a trailing space).",
            "Label = the `label` line, kept verbatim (CamelCase intent names, e.g. `AddToPlaylist`).",
            "`seq.out` (slot tags) is not used.",
        ),
        convert=convert_snips,
    ),
    DatasetSpec(
        name="mixsnips",
        title="MixSNIPS_clean (multi-intent; Qin et al. 2020, AGIF)",
        repo=_MIX_REPO[0], commit=_MIX_REPO[1],
        files=_files(*_MIX_REPO, [
            ("data/MixSNIPS_clean/train/seq.in", 4008398, "e694fe46dd973c95412e5387e95f857aae01fb7c101e1f88ad3f0eed1fe508fc",
             "bf3307ddf42b322e2c2c92d3ab51eefa82c3ed4f"),
            ("data/MixSNIPS_clean/train/label", 1138004, "c21896d0f71f9c98f8f99a53bc69e8d7b493e249ce43e53dccfe9fe98f4244cd",
             "125549763b532ba4a19e88e3ca527031a3e0b991"),
            ("data/MixSNIPS_clean/dev/seq.in", 227510, "fd78e895d97ea5378fc7827cd865205df0d084abcc0a86e106924b91c647f1c3",
             "45080e722d28e06a5fbac6a65ee5eeb1b4660d2d"),
            ("data/MixSNIPS_clean/dev/label", 62619, "1c146015a5570715ae57391dec22f97eb5cceadaa99854157a033a6d709ba3ee",
             "844a8aed4c1a76e1c56d6f17a3093c1007def230"),
            ("data/MixSNIPS_clean/test/seq.in", 221429, "b66099552a9fb45273218d9f963ae18104047bcd8532d1dc5d47fdda339c3ce4",
             "aea1f3653a7ca0fdea71a2274f20315b36ec646a"),
            ("data/MixSNIPS_clean/test/label", 63078, "f6b48293331475cb04c50710786d527c5e5c94c9b277638d658435f0eabb6159",
             "a4dea3f43ed2762714a11e5f8298b056523824f6"),
        ]) + (SourceFile("LooperXX/AGIF", "6a4b26bef10abd626ef37f5c2bc16e18ca31762f", "LICENSE", 18092,
                         "8177f97513213526df2cf6184d8ff986c675afb514d4e68a404010521b880643",
                         "d159169d1050894d3ea3b98e1c965c4058208fe1", save_as="LICENSE.AGIF", copy_to="LICENSE.AGIF"),
              _SONOS_LICENSE),
        license="GPL-2.0 (AGIF repository) / CC0 1.0 (SNIPS utterances)",
        license_notes=(
            "yizhen20133868/GL-GIN has no LICENSE file and states no license.",
            "The dataset's original publisher, LooperXX/AGIF, has a repository LICENSE file 'GNU GENERAL PUBLIC LICENSE "
            "Version 2, June 1991' (copied as LICENSE.AGIF); it does not state a separate data license.",
            "MixSNIPS utterances are concatenations of SNIPS utterances; SNIPS (sonos/nlu-benchmark) is CC0 1.0 Universal "
            "(copied as LICENSE.sonos-nlu-benchmark).",
        ),
        cite="Qin et al. (2020), AGIF: An Adaptive Graph-Interactive Framework for Joint Multiple Intent Detection and "
             "Slot Filling (Findings of EMNLP).",
        sizes={"train": 39776, "validation": 2198, "test": 2199}, n_labels=7,
        decisions=(
            "The clean variant (MixSNIPS_clean): AGIF's README recommends the cleaned versions; sizes 39,776 / 2,198 / 2,199. "
            "The files are GL-GIN's copy (same authors' group); its dev and test files equal LooperXX/AGIF's.",
            "Text = the `seq.in` line (tokenised and lower-cased by the publishers; sub-utterances joined with `and`, "
            "`and then`, `,` etc.). Whitespace runs collapsed, ends stripped.",
            "Labels = the `label` line split on `#` (source order kept; an intent repeated within one line is kept once). "
            "Label names kept verbatim.",
            "Validation = the source `dev` split. `seq.out` (slot tags) is not used.",
        ),
        convert=convert_mixsnips,
    ),
)}


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """The registry entry for ``name``; a :class:`ConfigError` lists the known names otherwise."""
    if isinstance(name, DatasetSpec):
        return name
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}", field="NAME") from None


def default_dest() -> Path:
    """Where datasets go by default: ``$FRONTDESK_DATA``, else ``./datasets``."""
    return Path(os.environ.get(ENV_DATA) or "datasets").expanduser()


def manual_instructions(spec: DatasetSpec) -> str:
    """What to download by hand (public URL → path inside a folder DIR) and the command that converts it."""
    lines = [f"  {f.url()} -> DIR/{f.local}" for f in spec.files]
    return ("\n".join(lines) + f"\nthen run `frontdesk datasets convert {spec.name} --from DIR` "
            f"(`frontdesk datasets show {spec.name}` lists these files with their SHA-256)")


# -- verify, download, convert, write ----------------------------------------------------------------------

def digests(data: bytes) -> tuple[int, str, str]:
    """(size, SHA-256, git blob id) of some bytes; the blob id is what ``git hash-object`` prints."""
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return len(data), hashlib.sha256(data).hexdigest(), blob


def verify_file(f: SourceFile, path: Path, *, origin: str | None = None) -> None:
    """Raise :class:`DataError` unless ``path`` holds exactly the pinned bytes of ``f``."""
    if not path.is_file():
        raise DataError(f"missing: download {f.url()} to this path", path=path)
    size, sha, blob = digests(path.read_bytes())
    if (size, sha, blob) != (f.size, f.sha256, f.git_blob):
        where = origin or str(path)
        raise DataError(f"{where} is not the pinned {f.repo}@{f.commit[:12]}:{f.path} (size {size}, sha256 {sha}; "
                        f"expected size {f.size}, sha256 {f.sha256}): the file is corrupt or changed upstream; nothing was written")


def verify_dir(spec: DatasetSpec, root: Path) -> None:
    """Check every file of ``spec`` under ``root`` (at its ``save_as`` path)."""
    missing = [f for f in spec.files if not (root / f.local).is_file()]
    if missing:
        listing = "\n".join(f"  {f.url()} -> {root / f.local}" for f in missing)
        raise DataError(f"{len(missing)} of the {len(spec.files)} files of {spec.name} are missing in {root}; download:\n{listing}")
    for f in spec.files:
        verify_file(f, root / f.local)


def _download(client: httpx.Client, spec: DatasetSpec, f: SourceFile, base_url: str | None, into: Path) -> None:
    """Stream one file into ``into/f.local`` (never more than its pinned size), then verify it."""
    import httpx

    url = f.url(base_url)
    target = into / f.local
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise DownloadError(f"HTTP {resp.status_code} for {url}: the pinned file is not there (check --base-url), "
                                    f"or download it by hand and use `frontdesk datasets convert`", url=url)
            got = 0
            with target.open("wb") as fh:
                for chunk in resp.iter_bytes():
                    got += len(chunk)
                    if got > f.size:
                        raise DataError(f"{url} sends more than the pinned {f.size} bytes: not the pinned file; nothing was written")
                    fh.write(chunk)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise DownloadError(f"no network ({type(exc).__name__}: {exc} for {url}): download the files listed below by hand "
                            f"from their public source into a folder DIR:\n{manual_instructions(spec)}", url=url, offline=True) from None
    except httpx.HTTPError as exc:
        raise DownloadError(f"download of {url} failed ({type(exc).__name__}: {exc}): try again, or download the files "
                            f"by hand:\n{manual_instructions(spec)}", url=url) from None
    verify_file(f, target, origin=url)


def _httpx() -> ModuleType:
    """The httpx module, or a :class:`ConfigError` saying how to install it."""
    try:
        import httpx
    except ImportError:
        raise ConfigError("downloading datasets needs httpx: pip install 'frontdesk[datasets]' "
                          "(or download the files by hand and use `frontdesk datasets convert`)") from None
    return httpx


def fetch_dataset(name: str | DatasetSpec, dest: str | Path | None = None, *, base_url: str | None = None,
                  force: bool = False, progress: Progress | None = None) -> Path:
    """Download ``name``'s pinned files, verify and convert them; returns the new ``dest/name`` folder.

    ``dest`` defaults to :func:`default_dest`; ``base_url`` replaces ``https://raw.githubusercontent.com``
    (a mirror with the same ``owner/repo/commit/path`` layout). Raises :class:`DownloadError` when a file
    cannot be downloaded (``offline=True`` when the host is unreachable: the message lists the files to
    fetch by hand), :class:`DataError` when a file is not the pinned one, :class:`ConfigError` for an unknown
    name or an existing folder without ``force``. Nothing is written under ``dest`` unless all succeeds.
    """
    httpx = _httpx()
    spec = get_spec(name)
    target = (Path(dest) if dest is not None else default_dest()).expanduser() / spec.name
    _check_target(target, force)
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    with tempfile.TemporaryDirectory(prefix=f"frontdesk-{spec.name}-") as tmp, \
            httpx.Client(timeout=timeout, follow_redirects=True, headers={"User-Agent": "frontdesk-datasets"}) as client:
        for i, f in enumerate(spec.files):
            if progress is not None:
                progress(f"downloading {f.path}", i / (len(spec.files) + 1))
            _download(client, spec, f, base_url, Path(tmp))
        if progress is not None:
            progress("converting", len(spec.files) / (len(spec.files) + 1))
        origin = f"downloaded from {base_url or DEFAULT_BASE_URL} by `frontdesk datasets fetch {spec.name}`"
        return _convert_verified(spec, Path(tmp), target, force=force, origin=origin)


def convert_dataset(name: str | DatasetSpec, source: str | Path, dest: str | Path | None = None, *,
                    force: bool = False) -> Path:
    """Convert files downloaded by hand (each at its ``save_as`` path under ``source``; a clone of the
    repository at the pinned commit works) into ``dest/name``; same checks and output as :func:`fetch_dataset`."""
    spec = get_spec(name)
    src = Path(source).expanduser()
    if not src.is_dir():
        raise DataError(f"not a folder: put the files of {spec.name} there:\n{manual_instructions(spec)}", path=src)
    target = (Path(dest) if dest is not None else default_dest()).expanduser() / spec.name
    _check_target(target, force)
    verify_dir(spec, src)
    return _convert_verified(spec, src, target, force=force,
                             origin=f"converted from files downloaded by hand by `frontdesk datasets convert {spec.name}`")


def _check_target(target: Path, force: bool) -> None:
    if (target.exists() or target.is_symlink()) and not force:
        raise ConfigError(f"{target} already exists: pass --force (force=True) to replace it", field="--dest")


def _convert_verified(spec: DatasetSpec, src: Path, target: Path, *, force: bool, origin: str) -> Path:
    """Convert the verified files in ``src`` and put the result at ``target`` in one step."""
    splits = spec.convert(src)
    _check_target(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = staging_path(target, "fetching")
    try:
        staged.mkdir()
        write_splits(staged, splits)
        for f in spec.files:
            if f.copy_to:
                shutil.copyfile(src / f.local, staged / f.copy_to)
        (staged / "SOURCE.md").write_text(source_md(spec, splits, origin), encoding="utf-8")
        replace_directory(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return target


def write_splits(directory: Path, splits: Mapping[str, Sequence[Row]]) -> None:
    """``train/validation/test.jsonl`` (one ``{"text", "labels"}`` object a line, UTF-8) and ``labels.txt`` (sorted union)."""
    labels: set[str] = set()
    for split in SPLITS:
        with (directory / f"{split}.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
            for text, labs in splits[split]:
                labels.update(labs)
                fh.write(json.dumps({"text": text, "labels": labs}, ensure_ascii=False) + "\n")
    (directory / "labels.txt").write_text("".join(f"{lab}\n" for lab in sorted(labels)), encoding="utf-8", newline="\n")


def source_md(spec: DatasetSpec, splits: Mapping[str, Sequence[Row]], origin: str) -> str:
    """The provenance note written beside the data: source, files, licence, split sizes, conversion rules."""
    from frontdesk import __version__

    files = "\n".join(f"  - `{f.repo}` `{f.path}` — {f.url()} (git blob `{f.git_blob}`, SHA-256 `{f.sha256}`"
                      + (f"; copied as `{f.copy_to}`" if f.copy_to else "") + ")" for f in spec.files)
    rows = []
    for split in SPLITS:
        part = splits[split]
        present = {lab for _t, labs in part for lab in labs}
        multi = sum(len(labs) > 1 for _t, labs in part)
        rows.append(f"| {split} | {len(part)} | {len(present)} | {multi} |")
    n_labels = len({lab for split in SPLITS for _t, labs in splits[split] for lab in labs})
    notes = "\n".join(f"- {n}" for n in spec.license_notes)
    decisions = "\n".join(f"- {d}" for d in spec.decisions)
    return f"""# {spec.title}

Made by frontdesk {__version__}: {origin}.

## Source

- Repository: https://github.com/{spec.repo}
- Commit: `{spec.commit}`
- Files (each checked for its size, SHA-256 and git blob id before conversion):
{files}
- Please cite: {spec.cite}

## License

- {spec.license}
{notes}

## Splits

| split | examples | labels present | multi-label examples |
|---|---|---|---|
{chr(10).join(rows)}

Number of labels (union of all splits, see labels.txt): **{n_labels}**

## Conversion decisions

{decisions}
- Rows are written as `{{"text": ..., "labels": [...]}}`, UTF-8, one a line; labels.txt is the sorted label set.
"""
