"""`frontdesk datasets`: fetch over real HTTP (a loopback server with small synthetic files in each upstream
format), verification, the conversion rules of each dataset, atomic writes, the offline path, the CLI."""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from frontdesk import Dataset
from frontdesk.data import fetch as F
from frontdesk.errors import ConfigError, DataError

# -- synthetic upstream files, one set per dataset, in the upstream formats --------------------------------

B77_COUNTS = {"card_arrival": 25, "Refund_not_showing_up": 15, "top_up_failed": 7, "age_limit": 5, "atm_support": 4}


def _banking77() -> dict[str, bytes]:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")  # upstream: CRLF, quoted fields may hold newlines
    w.writerow(["text", "category"])
    for label, n in B77_COUNTS.items():
        for i in range(n):
            w.writerow([f"  where is\tmy {label}   number {i} ?  ", label])
    w.writerow(["quoted, with a\nnewline inside", "card_arrival"])
    train = out.getvalue()
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["text", "category"])
    for label in B77_COUNTS:
        w.writerow([f"test  {label}", label])
    return {"banking_data/train.csv": train.encode(), "banking_data/test.csv": out.getvalue().encode(),
            "banking_data/categories.json": json.dumps(list(B77_COUNTS), indent=2).encode(),
            "LICENSE": "Attribution 4.0 International — synthetic\n".encode()}


def _clinc150() -> dict[str, bytes]:
    data = {"oos_val": [["a show on  broadway", "oos"]], "val": [["what's the weather", "weather"], ["set a timer", "timer"]],
            "train": [["how is the weather", "weather"], ["timer for 5 minutes ", "timer"], ["rain today?", "weather"]],
            "oos_test": [["who won the nfl", "oos"], ["tell me a joke about cats", "oos"]],
            "test": [["weather in paris", "weather"]], "oos_train": [["what is  love", "oos"]]}
    return {"data/data_full.json": json.dumps(data, indent=4).encode(), "LICENSE": b"Attribution 3.0 Unported (synthetic)\n"}


def _snips() -> dict[str, bytes]:
    files = {"LICENSE.sonos-nlu-benchmark": b"CC0 1.0 Universal (synthetic)\n"}
    rows = {"train": [("add step to me to the 50 cl\u00e1sicos playlist ", "AddToPlaylist"), ("play  some jazz", "PlayMusic"),
                      ("will it rain", "GetWeather")],
            "valid": [("book a table  for two", "BookRestaurant")], "test": [("play the song", "PlayMusic")]}
    for split, items in rows.items():
        files[f"data/snips/{split}/seq.in"] = "".join(f"{t}\n" for t, _ in items).encode()
        files[f"data/snips/{split}/label"] = "".join(f"{lab}\n" for _, lab in items).encode()
    return files


def _mixsnips() -> dict[str, bytes]:
    files = {"LICENSE.AGIF": b"GNU GENERAL PUBLIC LICENSE Version 2 (synthetic)\n",
             "LICENSE.sonos-nlu-benchmark": b"CC0 1.0 Universal (synthetic)\n"}
    rows = {"train": [("play jazz and  rate this book five", "PlayMusic#RateBook"), ("rate it and then play it", "RateBook#PlayMusic"),
                      ("play x , play y and rate z", "PlayMusic#PlayMusic#RateBook"), ("what is the weather", "GetWeather")],
            "dev": [("play a and check the weather", "PlayMusic#GetWeather")], "test": [("rate this", "RateBook")]}
    for split, items in rows.items():  # upstream: no newline after the last line
        files[f"data/MixSNIPS_clean/{split}/seq.in"] = "\n".join(t for t, _ in items).encode()
        files[f"data/MixSNIPS_clean/{split}/label"] = "\n".join(lab for _, lab in items).encode()
    return files


SYNTHETIC = {"banking77": _banking77, "clinc150": _clinc150, "snips": _snips, "mixsnips": _mixsnips}


def pinned(name: str, files: dict[str, bytes]) -> F.DatasetSpec:
    """The registry entry of ``name`` with its checksums re-pinned to the synthetic files."""
    spec = F.DATASETS[name]
    def pin(f: F.SourceFile) -> F.SourceFile:
        data = files[f.local]
        return dataclasses.replace(f, size=len(data), sha256=hashlib.sha256(data).hexdigest(), git_blob=git_blob(data))
    return dataclasses.replace(spec, files=tuple(pin(f) for f in spec.files))


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def publish(www: Path, spec: F.DatasetSpec, files: dict[str, bytes]) -> None:
    """Lay the files out like raw.githubusercontent.com: OWNER/REPO/COMMIT/PATH."""
    for f in spec.files:
        p = www / f.repo / f.commit / f.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(files[f.local])


def save_by_hand(folder: Path, files: dict[str, bytes]) -> Path:
    for local, data in files.items():
        (folder / local).parent.mkdir(parents=True, exist_ok=True)
        (folder / local).write_bytes(data)
    return folder


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving ``www`` (a thread); yields (base URL, www folder)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", www
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def fetched(name: str, server: tuple[str, Path], dest: Path) -> tuple[Path, F.DatasetSpec, dict[str, bytes]]:
    base, www = server
    files = SYNTHETIC[name]()
    spec = pinned(name, files)
    publish(www, spec, files)
    return F.fetch_dataset(spec, dest, base_url=base), spec, files


# -- conversion rules ------------------------------------------------------------------------------------

def test_banking77_validation_is_carved_per_label_by_sha256_rank(server: tuple[str, Path], tmp_path: Path) -> None:
    out, _spec, _files = fetched("banking77", server, tmp_path / "data")
    assert out == tmp_path / "data" / "banking77"
    train, val, test = rows(out / "train.jsonl"), rows(out / "validation.jsonl"), rows(out / "test.jsonl")
    source = [(" ".join(r["text"].split()), r["category"])
              for r in csv.DictReader(io.StringIO(_banking77()["banking_data/train.csv"].decode(), newline=""))]
    # per label round(n / 10), half to even: 25+1 -> 3, 15 -> 2 (1.5), 7 -> 1, 5 -> 0 (0.5), 4 -> 0
    counts = {lab: sum(r["labels"] == [lab] for r in val) for lab in B77_COUNTS}
    assert counts == {"card_arrival": 3, "Refund_not_showing_up": 2, "top_up_failed": 1, "age_limit": 0, "atm_support": 0}
    # the chosen rows are those with the smallest sha256("42\x1f<label>\x1f<index>\x1f<text>") of their label
    expected = []
    for lab, k in counts.items():
        idx = [i for i, (_t, lab2) in enumerate(source) if lab2 == lab]
        key = {i: hashlib.sha256(f"42\x1f{lab}\x1f{i}\x1f{source[i][0]}".encode()).hexdigest() for i in idx}
        expected += sorted(idx, key=key.__getitem__)[:k]
    assert [(r["text"], r["labels"][0]) for r in val] == [source[i] for i in sorted(expected)]  # source order kept
    assert [(r["text"], r["labels"][0]) for r in train] == [s for i, s in enumerate(source) if i not in set(expected)]
    # whitespace collapsed (tabs, runs, the newline inside a quoted field), ends stripped, case kept
    assert train[0]["text"] == "where is my card_arrival number 0 ?"
    assert {"text": "quoted, with a newline inside", "labels": ["card_arrival"]} in train + val
    assert test[0] == {"text": "test card_arrival", "labels": ["card_arrival"]}
    # labels.txt: sorted, verbatim (the mixed-case label sorts first)
    assert (out / "labels.txt").read_text() == "".join(f"{lab}\n" for lab in sorted(B77_COUNTS))
    assert (out / "labels.txt").read_text().startswith("Refund_not_showing_up\n")
    assert (out / "LICENSE").read_bytes() == _banking77()["LICENSE"]
    source_md = (out / "SOURCE.md").read_text()
    assert "PolyAI-LDN/task-specific-datasets" in source_md and F.DATASETS["banking77"].commit in source_md and "CC BY 4.0" in source_md
    data = Dataset.load(out)  # frontdesk's own loader reads the result
    assert (len(data.train), len(data.validation), len(data.test)) == (len(train), 6, 5) and len(data.labels) == 5


def test_carve_validation_is_deterministic_and_partitions() -> None:
    src = [(f"text {i}", [f"l{i % 3}"]) for i in range(95)]
    train, val = F.carve_validation(src)
    assert F.carve_validation(src) == (train, val)
    assert sorted(train + val) == sorted(src) and not set(map(str, train)) & set(map(str, val))
    assert len(val) == 3 + 3 + 3  # 32, 32, 31 rows per label -> 3 each
    assert F.carve_validation(src, seed=7)[1] != val  # the seed matters


def test_clinc150_keeps_oos_after_in_scope_in_every_split(server: tuple[str, Path], tmp_path: Path) -> None:
    out, _spec, _files = fetched("clinc150", server, tmp_path)
    assert rows(out / "train.jsonl") == [{"text": "how is the weather", "labels": ["weather"]},
                                         {"text": "timer for 5 minutes", "labels": ["timer"]},
                                         {"text": "rain today?", "labels": ["weather"]},
                                         {"text": "what is love", "labels": ["oos"]}]
    assert [r["labels"] for r in rows(out / "validation.jsonl")] == [["weather"], ["timer"], ["oos"]]
    assert [r["text"] for r in rows(out / "test.jsonl")] == ["weather in paris", "who won the nfl", "tell me a joke about cats"]
    assert (out / "labels.txt").read_text() == "oos\ntimer\nweather\n"


def test_snips_pairs_lines_keeps_unicode_and_strips(server: tuple[str, Path], tmp_path: Path) -> None:
    out, _spec, files = fetched("snips", server, tmp_path)
    raw = (out / "train.jsonl").read_text(encoding="utf-8")
    assert '"add step to me to the 50 cl\u00e1sicos playlist"' in raw  # UTF-8 kept, not \\u-escaped; trailing space gone
    assert [r["labels"] for r in rows(out / "train.jsonl")] == [["AddToPlaylist"], ["PlayMusic"], ["GetWeather"]]
    assert rows(out / "validation.jsonl") == [{"text": "book a table for two", "labels": ["BookRestaurant"]}]
    assert (out / "LICENSE.sonos-nlu-benchmark").read_bytes() == files["LICENSE.sonos-nlu-benchmark"]


def test_mixsnips_splits_intents_on_hash_in_order_once(server: tuple[str, Path], tmp_path: Path) -> None:
    out, _spec, _files = fetched("mixsnips", server, tmp_path)
    train = rows(out / "train.jsonl")
    assert [r["labels"] for r in train] == [["PlayMusic", "RateBook"], ["RateBook", "PlayMusic"], ["PlayMusic", "RateBook"], ["GetWeather"]]
    assert train[0]["text"] == "play jazz and rate this book five"
    assert rows(out / "validation.jsonl") == [{"text": "play a and check the weather", "labels": ["PlayMusic", "GetWeather"]}]
    assert {p.name for p in out.iterdir()} == {"train.jsonl", "validation.jsonl", "test.jsonl", "labels.txt", "SOURCE.md",
                                                "LICENSE.AGIF", "LICENSE.sonos-nlu-benchmark"}
    assert "| train | 4 | 3 | 3 |" in (out / "SOURCE.md").read_text()


def test_paired_files_of_different_length_are_refused(tmp_path: Path) -> None:
    files = _snips()
    files["data/snips/test/label"] += b"PlayMusic\n"
    with pytest.raises(DataError, match="1 lines but .*label has 2"):
        F.convert_dataset(pinned("snips", files), save_by_hand(tmp_path / "src", files), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- verification, atomicity, errors ---------------------------------------------------------------------

def test_a_corrupted_download_is_refused_and_nothing_is_written(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    files = _banking77()
    spec = pinned("banking77", files)
    publish(www, spec, files)
    f = spec.files[1]  # test.csv: same size, one byte changed
    path = www / f.repo / f.commit / f.path
    data = bytearray(path.read_bytes())
    data[20] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"is not the pinned .*test\.csv .*sha256 .*nothing was written") as exc:
        F.fetch_dataset(spec, tmp_path / "data", base_url=base)
    assert f.sha256 in str(exc.value)
    assert not (tmp_path / "data").exists()
    # an existing dataset survives a failed --force fetch untouched
    good = F.convert_dataset(spec, save_by_hand(tmp_path / "byhand", files), tmp_path / "data")
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    with pytest.raises(DataError, match="not the pinned"):
        F.fetch_dataset(spec, tmp_path / "data", base_url=base, force=True)
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["banking77"]  # no staging folder left behind


def test_a_longer_response_is_cut_off(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    files = _clinc150()
    spec = pinned("clinc150", files)
    publish(www, spec, files)
    path = www / spec.files[0].repo / spec.files[0].commit / spec.files[0].path
    path.write_bytes(path.read_bytes() + b" " * 100_000)
    with pytest.raises(DataError, match="sends more than the pinned"):
        F.fetch_dataset(spec, tmp_path / "data", base_url=base)
    assert not (tmp_path / "data").exists()


def test_offline_says_what_to_download_and_how_to_convert(tmp_path: Path) -> None:
    with pytest.raises(F.DownloadError) as exc:
        F.fetch_dataset("mixsnips", tmp_path / "data", base_url=closed_port_url())
    msg = str(exc.value)
    assert exc.value.offline and msg.startswith("no network")
    assert "frontdesk datasets convert mixsnips --from DIR" in msg
    spec = F.DATASETS["mixsnips"]
    for f in spec.files:  # the public URLs, each with the path to save it at
        assert f"https://raw.githubusercontent.com/{f.repo}/{f.commit}/{f.path} -> DIR/{f.local}" in msg
    assert not (tmp_path / "data").exists()


def test_a_missing_upstream_file_is_an_http_error(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _www = server  # nothing published
    with pytest.raises(F.DownloadError, match="HTTP 404") as exc:
        F.fetch_dataset("snips", tmp_path, base_url=base)
    assert not exc.value.offline and exc.value.url.startswith(base)


def test_convert_from_hand_downloaded_files_equals_fetch(server: tuple[str, Path], tmp_path: Path) -> None:
    out, spec, files = fetched("mixsnips", server, tmp_path / "fetched")
    again = F.convert_dataset(spec, save_by_hand(tmp_path / "byhand", files), tmp_path / "converted")
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "labels.txt", "LICENSE.AGIF", "LICENSE.sonos-nlu-benchmark"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    assert "converted from files downloaded by hand" in (again / "SOURCE.md").read_text()
    # a folder missing files: the error lists each missing one with its public URL
    (tmp_path / "byhand" / "LICENSE.AGIF").unlink()
    with pytest.raises(DataError, match=r"1 of the 8 files of mixsnips are missing") as exc:
        F.convert_dataset(spec, tmp_path / "byhand", tmp_path / "other")
    assert "LooperXX/AGIF/6a4b26bef10abd626ef37f5c2bc16e18ca31762f/LICENSE" in str(exc.value)
    assert not (tmp_path / "other").exists()


def test_an_existing_dataset_needs_force(server: tuple[str, Path], tmp_path: Path) -> None:
    out, spec, files = fetched("clinc150", server, tmp_path)
    (out / "marker").write_text("old")
    with pytest.raises(ConfigError, match="already exists: pass --force"):
        F.fetch_dataset(spec, tmp_path, base_url=server[0])
    assert (out / "marker").exists()
    F.fetch_dataset(spec, tmp_path, base_url=server[0], force=True)
    assert not (out / "marker").exists() and len(rows(out / "train.jsonl")) == 4


def test_git_blob_ids_match_git() -> None:
    # known ids (`git hash-object`): the empty blob and "hello\n"; the pinned files are checked this way
    assert F.digests(b"")[2] == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert F.digests(b"hello\n")[2] == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known datasets: banking77, clinc150, snips, mixsnips"):
        F.get_spec("imdb")


# -- the CLI, in subprocesses ----------------------------------------------------------------------------

def cli(*args: str, env: dict[str, str] | None = None, code: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "frontdesk", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_cli_list_and_show() -> None:
    res = cli("datasets", "list", "--json", "--dest", "/nonexistent")
    assert res.returncode == 0, res.stderr
    listed = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["name"] for d in listed] == ["banking77", "clinc150", "snips", "mixsnips"]
    assert listed[0]["license"] == "CC BY 4.0" and listed[0]["examples"] == {"train": 9000, "validation": 1003, "test": 3080}
    assert listed[1]["labels"] == 151 and not any(d["fetched"] for d in listed)
    res = cli("datasets", "show", "clinc150")
    assert res.returncode == 0, res.stderr
    assert "https://raw.githubusercontent.com/clinc/oos-eval/828f8093932c8fe6ca7936c3d2e52903b1c523de/data/data_full.json" in res.stdout
    assert "CC BY 3.0" in res.stdout


def test_cli_errors_are_clear_and_write_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    res = cli("datasets", "fetch", "banking77", "--dest", str(tmp_path / "d"), "--base-url", closed_port_url())
    assert res.returncode == 2 and "no network" in res.stderr and "frontdesk datasets convert banking77 --from DIR" in res.stderr
    assert "Traceback" not in res.stderr
    # synthetic files served under the real pins: every checksum fails
    base, www = server
    files = _banking77()
    publish(www, F.DATASETS["banking77"], files)
    res = cli("datasets", "fetch", "banking77", "--dest", str(tmp_path / "d"), "--base-url", base)
    assert res.returncode == 2 and "is not the pinned PolyAI-LDN/task-specific-datasets" in res.stderr
    res = cli("datasets", "convert", "banking77", "--from", str(save_by_hand(tmp_path / "byhand", files)), "--dest", str(tmp_path / "d"))
    assert res.returncode == 2 and "not the pinned" in res.stderr
    res = cli("datasets", "convert", "snips", "--from", str(tmp_path / "byhand"), "--dest", str(tmp_path / "d"))
    assert res.returncode == 2 and "7 of the 7 files of snips are missing" in res.stderr
    assert not (tmp_path / "d").exists()
    res = cli("datasets", "fetch", "imdb")
    assert res.returncode == 2 and "known datasets" in res.stderr


# The real CLI in a subprocess, with the registry's pins replaced by the synthetic files' (read from a JSON file).
REPINNED_CLI = """
import dataclasses, json, os, sys
from frontdesk.data import fetch
pins = json.load(open(os.environ["PINS"]))
for name, by_local in pins.items():
    spec = fetch.DATASETS[name]
    fetch.DATASETS[name] = dataclasses.replace(spec, files=tuple(dataclasses.replace(f, **by_local[f.local]) for f in spec.files))
sys.argv = ["frontdesk", *sys.argv[1:]]
from frontdesk.cli.main import main
main()
"""


def test_cli_fetch_and_convert(server: tuple[str, Path], tmp_path: Path) -> None:
    base, www = server
    files = _mixsnips()
    spec = pinned("mixsnips", files)
    publish(www, spec, files)
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"mixsnips": {f.local: {"size": f.size, "sha256": f.sha256, "git_blob": f.git_blob} for f in spec.files}}))
    env = {"PINS": str(pins), "FRONTDESK_DATA": str(tmp_path / "data")}
    res = cli("datasets", "fetch", "mixsnips", "--base-url", base, env=env, code=REPINNED_CLI)  # default dest: $FRONTDESK_DATA
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "data" / "mixsnips")
    assert len(rows(tmp_path / "data" / "mixsnips" / "train.jsonl")) == 4
    res = cli("datasets", "fetch", "mixsnips", "--base-url", base, env=env, code=REPINNED_CLI)
    assert res.returncode == 2 and "already exists: pass --force" in res.stderr
    res = cli("datasets", "convert", "mixsnips", "--from", str(save_by_hand(tmp_path / "byhand", files)), "--dest", str(tmp_path / "c"),
              env=env, code=REPINNED_CLI)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c" / "mixsnips" / "train.jsonl").read_bytes() == (tmp_path / "data" / "mixsnips" / "train.jsonl").read_bytes()
    res = cli("datasets", "list", "--json", env=env)  # $FRONTDESK_DATA is where list looks
    assert [d["fetched"] for d in map(json.loads, res.stdout.splitlines())] == [False, False, False, True]
