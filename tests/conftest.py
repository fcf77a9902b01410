"""Shared fixtures: the bundled example dataset and a small trained router."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontdesk import Dataset, Objective, Router
from frontdesk.cli import example_dir


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
