import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
SHARED = Path(os.environ.get("ZOOQL_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_configure(config):
    # Keep each test's hubs and caches out of the user's home.
    os.environ.setdefault("ZOOQL_CACHE", str(ROOT / ".cache" / "test-cache"))


@pytest.fixture
def hub(tmp_path):
    import zooql

    h = zooql.connect(tmp_path / "hub")
    yield h
    h.close()


@pytest.fixture
def shared_data():
    if not SHARED.exists():
        pytest.skip(f"shared data folder {SHARED} not present (benchmark tables live beside the repo)")
    return SHARED


def golden_compare(name: str, actual: str):
    """Compare with tests/golden/<name>; ZOOQL_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / name
    if os.environ.get("ZOOQL_UPDATE_GOLDEN") == "1" or not path.exists():
        if not path.exists() and os.environ.get("ZOOQL_UPDATE_GOLDEN") != "1":
            pytest.fail(f"golden file {path} missing; run with ZOOQL_UPDATE_GOLDEN=1 to create it")
        path.write_text(actual)
    assert actual == path.read_text(), f"output differs from golden file {path}"
