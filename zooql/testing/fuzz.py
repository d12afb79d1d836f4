"""Grammar-aware fuzzing of ZooQL (tests/fuzz/ and ``benchmarks/fuzz.py``).

Seeds are every statement of ``tests/golden/*.zql`` and of every ```zql and ```sql block of ``docs/``.
:class:`Mutator` lexes a seed with the hub's own Lark lexer (the core grammar plus every
method's fragment) and applies one to three mutations: token drops, swaps and duplication,
random grammar keywords, huge/negative/odd numbers, unicode, NUL and surrogate strings,
long and path-like identifiers, deep nesting (parentheses, NOT, minus), injection-looking
strings, ``?``/``:name`` placeholders, and it draws parameters of wrong counts and types.
Four cases in ten change only values, names and nesting, keeping the statement's shape so
that more of them get past the parser.

:func:`run` executes the statements against a small hub (name-only ``hf:`` models,
evaluations, outcomes, a queries task, a probe set) and checks, per statement:

* only :class:`zooql.errors.ZooQLError` subclasses escape (anything else is a *crash*);
* no statement runs over ``slow_s`` seconds (a *hang*; a 60 s alarm stops a real hang);
* a statement that fails changes nothing: every catalog table's row count and content hash
  and every file of the hub (path, size, mtime; the lock file and the DuckDB files aside,
  the catalog's content being compared through its tables) are as before.

Statements that would run models or long work (PROBE, FIND, RECOMMEND, TRAIN RECOMMENDER,
LABEL MODELS, CLASSIFY, RANK MODELS, REFRESH DESCRIPTORS, SELECT MODELS FOR TASK, CREATE
PROBE SET FROM 'builtin', ADD MODEL of a timm/open_clip/torchscript/python source, which
instantiates the model) are bound and planned only (``Hub.explain``), never run.
"""
from __future__ import annotations

import collections
import json
import os
import random
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HEAVY = {"Probe", "Find", "Recommend", "TrainRecommender", "LabelModels", "Classify", "RankModels",
         "RefreshDescriptors", "SelectModelsForTask"}
LOADABLE = ("timm:", "open_clip:", "torchscript:", "python:")
SKIP_FILES = {"hub.lock", "catalog.duckdb", "catalog.duckdb.wal"}
# DuckDB's own error text: a ZooQLError carrying it is a leak (the user should read ZooQL's words)
ENGINE_TEXT = re.compile(r"_duckdb|duckdb\.|Binder Error|Conversion Error|Catalog Error|Parser Error|"
                         r"Invalid Input Error|Out of Range Error|Not implemented Error|INTERNAL Error|"
                         r"Constraint Error|Dependency Error|Serialization Error|TransactionContext Error")

HUGE = ["999999999999999999999999999999", "2147483648", "100000000", "9223372036854775808", "1e309",
        "1e308", "0", "0.0", "-1", "-0", "1e-400", "4294967297", ".5", "1.5", "00000001"]
STRINGS = ["'\ud800'", "'\x00'", "'a\x00b'", "'../../../../etc/passwd'", "'/dev/zero'",
           "''' OR 1=1 --'", "'x''); DROP TABLE models; --'", "'%'", "'_'", "'\u202e\u0644\u200b'",
           "'" + "é" * 300 + "'", "''", "'builtin'", "'C:\\\\Windows\\\\system32'", "'\\\\'",
           "'; ATTACH ''/tmp/x.db'' AS x; --'", "'\U0001F600'", "'" + "x" * 5000 + "'"]
NAMES = ['"../../../escape"', '"a/b"', '"a\\b"', '"a\x00b"', '"CON"', '"."', '".."', '"' + "n" * 400 + '"',
         "x" * 300, '"models"', '"catalog.duckdb"', '"\ud800"', '"; DROP TABLE models --"', '""""', "tags",
         "name", "a-b-c", "_", '"hub.lock"']
PARAMS = [None, [], ["llama-3-8b"], "llama-3-8b", [object()], {"a": 1}, [1, 2, 3], [2 ** 70],
          [float("nan")], [["a", "b"]], {"missing": 1}, b"x", 5, [None], [True], {"t": "x", "u": 2},
          [float("inf")], ["\ud800"], [{"k": 1}], ("x", "y")]


def seed_statements(root: str | os.PathLike) -> list[str]:
    """Every statement of tests/golden/*.zql and of the docs' ```zql blocks."""
    root = Path(root)
    out: list[str] = []
    for p in sorted((root / "tests" / "golden").glob("*.zql")):
        out += [c.strip() for c in re.split(r"\n\s*\n", p.read_text()) if c.strip()]
    for p in sorted((root / "docs").glob("*.md")):
        for block in re.findall(r"```(?:zql|sql)\n(.*?)```", p.read_text(), flags=re.S):
            out += [s.strip() + ";" for s in block.split(";\n") if s.strip().rstrip(";")]
    return out


@dataclass
class Case:
    text: str
    params: object = None


_VALUE_OPS = (4, 4, 5, 5, 6, 7, 8)  # numbers, strings, names, nesting, placeholders


def _parses(registry, text: str) -> bool:
    try:
        registry.parse(text)
        return True
    except Exception:  # noqa: BLE001 - a seed that is an error case on purpose
        return False


class Mutator:
    """Lark-driven token mutations of seed statements (deterministic for a seed)."""

    def __init__(self, seeds: list[str], seed: int = 0):
        from zooql.methods import registry

        self.rng = random.Random(seed)
        self.seeds = seeds
        self.lark = registry.parser().lark
        self.keywords = sorted(registry.keywords())
        self._cache: dict[str, list[str]] = {}
        self.valid = [t for t in seeds if _parses(registry, t)] or seeds

    def tokens(self, text: str) -> list[str]:
        if text not in self._cache:
            try:
                toks = [str(t) for t in self.lark.lex(text)]
            except Exception:  # noqa: BLE001 - a seed the plain lexer cannot split: split on spaces
                toks = text.split()
            self._cache[text] = toks
        return list(self._cache[text])

    def _mutate_once(self, toks: list[str], values_only: bool = False) -> list[str]:
        r, n = self.rng, len(toks)
        if not toks:
            return [r.choice(self.keywords)]
        i = r.randrange(n)
        op = r.choice(_VALUE_OPS) if values_only else r.randrange(11)
        if op == 0:
            del toks[i]
        elif op == 1:
            j = r.randrange(n)
            toks[i], toks[j] = toks[j], toks[i]
        elif op == 2:
            toks[i:i] = [toks[i]] * r.choice((1, 2, 50))
        elif op == 3:
            toks.insert(i, r.choice(self.keywords))
        elif op == 4:
            nums = [k for k, t in enumerate(toks) if re.fullmatch(r"\d+(\.\d*)?([eE][+-]?\d+)?", t)]
            if nums or not values_only:
                toks[r.choice(nums) if nums else i] = r.choice(HUGE)
        elif op == 5:
            strs = [k for k, t in enumerate(toks) if t.startswith("'")]
            if strs or not values_only:
                toks[r.choice(strs) if strs else i] = r.choice(STRINGS)
        elif op == 6:
            idents = [k for k, t in enumerate(toks) if re.fullmatch(r"[A-Za-z_][\w-]*", t) and t.upper() not in self.keywords]
            if idents or not values_only:
                toks[r.choice(idents) if idents else i] = r.choice(NAMES)
        elif op == 7:
            depth = r.choice((5, 90, 120, 300, 2000))
            kind = r.randrange(3)
            k = next((k for k, t in enumerate(toks) if t.upper() == "WHERE"), None)
            if (k is None or k + 1 >= n) and values_only:
                pass
            elif k is None or k + 1 >= n:
                toks += ["WHERE"] + ["NOT"] * depth + ["tree", "=", "'x'"]
            elif kind == 0:
                toks[k + 1:] = ["("] * depth + toks[k + 1:] + [")"] * depth
            else:
                toks[k + 1:k + 1] = ["NOT" if kind == 1 else "-"] * depth
        elif op == 8:
            vals = [k for k, t in enumerate(toks) if t.startswith("'") or t[:1].isdigit()]
            if vals or not values_only:
                toks[r.choice(vals) if vals else i] = r.choice(("?", ":t", ":missing", "?"))
        elif op == 9:
            toks = toks[:i] if r.random() < 0.5 else toks + [";"] + self.tokens(r.choice(self.seeds))
        else:
            toks[i] = toks[i].upper() if r.random() < 0.5 else toks[i] + r.choice(("x", "_", "-1", "."))
        return toks

    def case(self) -> Case:
        values_only = self.rng.random() < 0.4  # keep the statement's shape: reach bind and run
        toks = self.tokens(self.rng.choice(self.valid if values_only else self.seeds))
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            toks = self._mutate_once(toks, values_only)
        text = " ".join(toks)
        params = self.rng.choice(PARAMS) if ("?" in toks or ":" in text or self.rng.random() < 0.15) else None
        return Case(text, params)


# ---- the small hub ----------------------------------------------------------------------------

def build_hub(folder: str | os.PathLike) -> tuple[str, str]:
    """A small hub at ``folder/hub`` and the input files its statements name (``folder/files``).
    Returns (hub path, base folder)."""
    import numpy as np

    import zooql

    folder = Path(folder)
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    models = ["base", "llama3", "llama3-math", "llama3-chat", "a", "b", "tiny_resnet", "r18"]
    (files / "leaderboard.csv").write_text("model,dataset,metric,score\n" + "".join(
        f"{m},{d},acc,{(i * 7 + j * 3) % 10 / 10}\n" for i, m in enumerate(models) for j, d in enumerate(("gsm8k", "mmlu"))))
    (files / "evals.csv").write_text("model,dataset,metric,score\nbase,gsm8k,f1,0.5\n")
    (files / "outcomes.csv").write_text("model,dataset,query_id,score\n" + "".join(
        f"{m},gsm8k,q{i},{(i + k) % 2}\n" for k, m in enumerate(models) for i in range(6)))
    (files / "finetunes.csv").write_text("name,source,tree\nft1,hf:org/ft1,llama-3-8b\n")
    (files / "queries.jsonl").write_text("".join(json.dumps(
        {"id": f"q{i}", "question": f"{i}+1", "answer": str(i + 1),
         "responses": {m: str(i + 1 if (i + k) % 3 else i) for k, m in enumerate(models)}}) + "\n" for i in range(8)))
    rng = np.random.default_rng(0)
    np.save(files / "probes.npy", rng.integers(0, 256, (6, 8, 8), dtype=np.uint8))
    np.savez(files / "t.npz", images=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), labels=np.arange(6) % 3)
    hub_path = folder / "hub"
    with zooql.connect(hub_path) as hub:
        for k, m in enumerate(models):
            hub.execute(f"ADD MODEL 'hf:org/{m}' AS \"{m}\" WITH (tree = 'llama-3-8b', downloads = {k * 100}, "
                        f"license = '{'mit' if k % 2 else 'apache'}')")
        base = str(files)
        hub.execute("IMPORT EVALUATIONS FROM 'leaderboard.csv'", base_dir=base)
        hub.execute("IMPORT OUTCOMES FROM 'outcomes.csv'", base_dir=base)
        hub.execute("CREATE TASK qa FROM 'queries.jsonl'", base_dir=base)
        hub.execute("CREATE PROBE SET ps FROM 'probes.npy'", base_dir=base)
    return str(hub_path), str(files)


# ---- snapshots ----------------------------------------------------------------------------------

def snapshot(hub) -> tuple:
    """(row count and content hash per catalog table, the hub's files)."""
    with hub.store.read() as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE "
                                            "table_schema = 'main' ORDER BY 1").fetchall()]
        sql = " UNION ALL ".join(f"SELECT '{t}', count(*), sum(hash(\"{t}\"))::VARCHAR FROM \"{t}\"" for t in tables)
        rows = tuple(sorted(con.execute(sql).fetchall())) if tables else ()
    files = []
    for dirpath, _, names in os.walk(hub.path):
        for n in names:
            if n in SKIP_FILES and dirpath == hub.path:
                continue
            p = os.path.join(dirpath, n)
            try:
                st = os.stat(p)
            except OSError:
                continue
            files.append((os.path.relpath(p, hub.path), st.st_size, st.st_mtime_ns))
    return rows, tuple(sorted(files))


def _diff(a: tuple, b: tuple) -> str:
    ta, tb = dict((r[0], r[1:]) for r in a[0]), dict((r[0], r[1:]) for r in b[0])
    tables = sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))
    fa, fb = set(a[1]), set(b[1])
    files = sorted({f[0] for f in fa ^ fb})
    return f"tables {tables} files {files[:5]}"


# ---- running --------------------------------------------------------------------------------------

@dataclass
class Report:
    n: int = 0                 # statements run (a generated text may hold several)
    texts: int = 0             # generated texts
    outcomes: collections.Counter = field(default_factory=collections.Counter)  # exception class -> n
    crashes: list = field(default_factory=list)    # (class, message, text, params)
    hangs: list = field(default_factory=list)      # (seconds, text)
    changes: list = field(default_factory=list)    # (class, diff, text)
    leaks: list = field(default_factory=list)      # (class, message, text): a ZooQLError with engine text
    explained: int = 0
    slowest: float = 0.0
    seconds: float = 0.0


class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _is_heavy(stmts) -> bool:
    from zooql.lang import ast as A

    for s in stmts:
        inner = s.statement if isinstance(s, A.Explain) else s
        name = type(inner).__name__
        if name in HEAVY:
            return True
        if name == "CreateProbeSet" and "builtin" in repr(getattr(inner, "path", "")).lower():
            return True
        source = getattr(getattr(inner, "source", None), "value", None)
        if name == "AddModel" and isinstance(source, str) and source.lower().startswith(LOADABLE):
            return True  # instantiates the model (a ViT-B-32 takes seconds)
    return False


def split_case(case: Case) -> tuple[list[Case], BaseException | None]:
    """A case's statements as cases of one statement each (a failed statement then says
    what it changed), or the ParseError of the text."""
    from zooql.methods import registry

    try:
        stmts = registry.parse(case.text)
    except BaseException as exc:  # noqa: BLE001 - classifying every escape is the point
        return [], exc
    if len(stmts) <= 1 or any(s.span is None for s in stmts):
        return [case], None
    return [Case(case.text[s.span[0]:s.span[1]], case.params) for s in stmts], None


def run_case(hub, case: Case, base: str):
    """Run one statement: (exception or None, seconds, explained only)."""
    from zooql.methods import registry

    t0 = time.perf_counter()
    try:
        heavy = _is_heavy(registry.parse(case.text))
        if heavy:
            hub.explain(case.text, case.params, base_dir=base)
        else:
            hub.execute(case.text, case.params, base_dir=base)
        return None, time.perf_counter() - t0, heavy
    except _Hang:
        raise
    except BaseException as exc:  # noqa: BLE001 - classifying every escape is the point
        return exc, time.perf_counter() - t0, False


def _record(rep: Report, exc, secs: float, explained: bool, cases, slow_s: float) -> None:
    from zooql.errors import ZooQLError

    text = cases[0].text[:300] if cases else ""
    rep.explained += explained
    rep.slowest = max(rep.slowest, secs)
    rep.outcomes[type(exc).__name__ if exc is not None else "ok"] += 1
    if secs > slow_s:
        rep.hangs.append((round(secs, 2), text))
    if exc is not None and not isinstance(exc, ZooQLError):
        params = repr(cases[0].params)[:80] if cases else ""
        rep.crashes.append((type(exc).__name__, str(exc)[:300], text, params))
    elif exc is not None and _engine_text(str(exc), cases[0].text if cases else ""):
        rep.leaks.append((type(exc).__name__, str(exc)[:300], text))


def _engine_text(message: str, statement: str) -> bool:
    """Whether ``message`` carries DuckDB's words (an echo of the statement's own lines aside)."""
    for line in statement.splitlines():
        if line.strip():
            message = message.replace(line, "")
    return ENGINE_TEXT.search(message) is not None


def run(n: int, seed: int = 0, *, root: str | os.PathLike, workdir: str | None = None,
        slow_s: float = 10.0, reset_every: int = 100, progress=None,
        max_seconds: float | None = None, shard: int = 0, shards: int = 1) -> Report:
    """Fuzz ``n`` generated texts (fewer when ``max_seconds`` runs out first: the same
    sequence, cut short); see the module doc for what is checked. ``shard``/``shards``: run
    only the texts ``i`` with ``i % shards == shard`` of the same seeded sequence (parallel
    workers on disjoint shards; every worker generates the whole sequence)."""
    import zooql

    rep = Report()
    tmp = workdir or tempfile.mkdtemp(prefix="zooql-fuzz-")
    pristine, base = build_hub(os.path.join(tmp, "template"))
    mut = Mutator(seed_statements(root), seed)
    live = os.path.join(tmp, "live")
    old = signal.signal(signal.SIGALRM, _alarm)
    t_start = time.perf_counter()
    hub = None
    mine = 0   # texts of this shard so far
    try:
        for i in range(n):
            if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
                break
            generated = mut.case()
            if i % shards != shard:
                continue
            if mine % reset_every == 0:  # a fresh copy: DROPs and ALTERs must not starve later cases
                if hub is not None:
                    hub.close()
                shutil.rmtree(live, ignore_errors=True)
                shutil.copytree(pristine, live)
                hub = zooql.connect(live)
                before = snapshot(hub)
            mine += 1
            rep.texts += 1
            t0 = time.perf_counter()
            cases, parse_exc = split_case(generated)
            if parse_exc is not None:  # raised before the hub is opened: nothing to compare
                rep.n += 1
                _record(rep, parse_exc, time.perf_counter() - t0, False, [generated], slow_s)
            for case in cases:
                signal.alarm(60)
                try:
                    exc, secs, explained = run_case(hub, case, base)
                except _Hang:
                    exc, secs, explained = TimeoutError("over 60 s"), 60.0, False
                finally:
                    signal.alarm(0)
                rep.n += 1
                _record(rep, exc, secs, explained, [case], slow_s)
                if exc is not None and type(exc).__name__ == "ParseError":
                    continue
                after = snapshot(hub)
                if exc is not None and after != before:
                    rep.changes.append((type(exc).__name__, _diff(before, after), case.text[:300]))
                before = after
            if progress is not None and mine % 500 == 0:
                progress(i + 1, rep)
    finally:
        signal.signal(signal.SIGALRM, old)
        if hub is not None:
            hub.close()
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    rep.seconds = time.perf_counter() - t_start
    return rep
