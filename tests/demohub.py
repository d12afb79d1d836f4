"""The demo hub (`zooql demo`, `make demo`'s state) for tests that run the README's and the
docs' examples: built once per version of the code in the test cache ($ZOOQL_CACHE, set by
conftest.py), then copied for each test that changes it."""
import contextlib
import hashlib
import io
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _code_hash() -> str:
    h = hashlib.sha256()
    for p in sorted((ROOT / "zooql").rglob("*")):
        if p.suffix in (".py", ".lark", ".sql", ".csv") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(ROOT)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def build_demo_hub() -> Path:
    """The path of a complete demo hub for this code (built here when missing: ~2 minutes)."""
    from zooql.demo.main import main

    if os.environ.get("ZOOQL_TEST_DEMO_HUB"):    # a demo hub built beforehand (development)
        return Path(os.environ["ZOOQL_TEST_DEMO_HUB"])
    cache = Path(os.environ.get("ZOOQL_CACHE", ROOT / ".cache" / "test-cache"))
    path = cache / f"demo-hub-{_code_hash()}"
    if not (path / "READY").exists():
        if path.exists():
            shutil.rmtree(path)
        for old in cache.glob("demo-hub-*"):      # hubs of older code
            shutil.rmtree(old, ignore_errors=True)
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            main(str(path), render=lambda res: f"{res.columns} {len(res)} rows; {res.message}")
        (path / "demo.log").write_text(log.getvalue())
        (path / "READY").write_text("ok\n")
    return path


def copy_demo_hub(dest: Path) -> Path:
    src = build_demo_hub()
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("hub.lock"))
    return dest


@pytest.fixture(scope="session")
def demo_hub_path():
    return build_demo_hub()


def doc_examples(path: Path) -> list[tuple[str, str | None]]:
    """(statement, reason it is not run or None) for each `;`-terminated statement of the
    ```sql / ```zql blocks of a Markdown file. `-- not run: why` after a statement, or
    `<!-- not run: why -->` on the line before a block, marks what the tests skip."""
    text = path.read_text()
    out = []
    for m in re.finditer(r"(<!-- not run: (.*?) -->\n)?```(?:sql|zql)\n(.*?)```", text, flags=re.S):
        block_reason = m.group(2)
        cur = ""
        for line in m.group(3).splitlines():
            cur = (cur + "\n" + line).strip("\n")
            code, _, comment = line.partition("--")
            if code.rstrip().endswith(";"):
                stmt = "\n".join(x.split("--")[0].rstrip() for x in cur.splitlines()).strip()
                why = re.search(r"not run: ([^)]*)", comment)
                out.append((stmt, block_reason or (why.group(1).strip() if why else None)))
                cur = ""
    return out
