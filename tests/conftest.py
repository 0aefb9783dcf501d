"""Shared fixtures. The real VGLC corpus is read where it already is (see `real_vglc_dir`); never copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def real_vglc_dir(repo: Path = REPO, env: str | None = None) -> Path | None:
    """$HMOLQD_VGLC_DIR when set (`env` stands for it in tests), else ./data/vglc-zelda of the repository (where the
    README's fetch-data command puts it), else ../shared/data/vglc-zelda beside it; None where none holds Processed/."""
    env = os.environ.get("HMOLQD_VGLC_DIR") if env is None else env
    places = [Path(env)] if env else [repo / "data" / "vglc-zelda", repo.parent / "shared" / "data" / "vglc-zelda"]
    return next((path for path in places if (path / "Processed").is_dir()), None)


@pytest.fixture(scope="session")
def vglc_dir() -> Path:
    """The real corpus folder; tests that use it are skipped (with the reason) where it is absent."""
    path = real_vglc_dir()
    if path is None:
        pytest.skip(
            "real VGLC corpus not found: set HMOLQD_VGLC_DIR, or run python -m hmolqd fetch-data data/vglc-zelda, "
            "or place it at ../shared/data/vglc-zelda"
        )
    return path


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


# CI sets HMOLQD_REQUIRE_REAL_DATA=1: there a real-corpus test that skips is a failure, not a quiet pass.
REQUIRE_REAL_DATA = os.environ.get("HMOLQD_REQUIRE_REAL_DATA") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    uses_real_data = "vglc_dir" in getattr(item, "fixturenames", ()) or item.get_closest_marker("real_data")
    if REQUIRE_REAL_DATA and report.skipped and uses_real_data:
        report.outcome = "failed"
        report.longrepr = f"real-data test skipped but HMOLQD_REQUIRE_REAL_DATA=1: {report.longrepr}"
