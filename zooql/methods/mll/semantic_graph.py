"""The semantic graph of MLL (Model Label Learning): WordNet noun synsets with images.

A graph is built from a user image folder (see docs/vlm_selection.md)::

    folder/
      n02084071/ *.jpg          ImageNet-style WordNet ids (n + 8-digit noun offset), or
      dog.n.01/  *.jpg          synset names, or
      graph.json                (optional) the nodes themselves: no WordNet needed

``graph.json`` is a list of ``{"id", "name", "definition", "parent"}`` objects (``parent``
an id, a list of ids or null); a ``graph.csv`` with the same columns works too. Without such
a file every sub-folder must name a WordNet noun synset, and WordNet 3.0 is read offline
from ``$ZOOQL_WORDNET``, the ``wordnet`` option, or ``/usr/share/wordnet`` (Debian's
``wordnet-base``): names, definitions and hypernym edges come from ``data.noun`` and
``index.noun``.

Each node keeps up to ``max_images`` images (its folder's image files in sorted order) and
the caption ``"{name} which is {definition}"``.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

from zooql.runtime.images import IMAGE_EXTS
from zooql.errors import ExecutionError

DEFAULT_WORDNET = "/usr/share/wordnet"
DEFAULT_MAX_IMAGES = 75
GRAPH_FILES = ("graph.json", "graph.csv")
_WNID = re.compile(r"^n\d{8}$")
_SYNSET = re.compile(r"^(.+)\.n\.(\d+)$")
WORDNET_HINT = ("install WordNet 3.0 (Debian/Ubuntu: apt-get install wordnet-base, which puts the dict "
                "files in /usr/share/wordnet) or point $ZOOQL_WORDNET / OPTIONS (wordnet = '<dict folder>') "
                "at a folder holding data.noun and index.noun; or put a graph.json (id, name, definition, "
                "parent) in the image folder")


@dataclass
class Synset:
    wnid: str                 # n02084071
    name: str                 # dog.n.01
    lemmas: list[str]
    definition: str
    hypernyms: list[str]      # wnids


@dataclass
class Node:
    id: str
    name: str
    definition: str
    parents: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)   # paths relative to the graph folder
    images_hash: str = ""

    @property
    def caption(self) -> str:
        return caption(self.name, self.definition)


def caption(name: str, definition: str | None) -> str:
    """The MLL caption of a concept: ``"{name} which is {definition}"``."""
    name = str(name).replace("_", " ")
    return f"{name} which is {definition}" if definition else name


# ---- WordNet (offline) ---------------------------------------------------------------------

def wordnet_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get("ZOOQL_WORDNET") or DEFAULT_WORDNET


class WordNet:
    """A small reader of WordNet 3.0 noun data (``data.noun`` + ``index.noun``)."""

    def __init__(self, root: str):
        self.root = root
        data, index = os.path.join(root, "data.noun"), os.path.join(root, "index.noun")
        if not (os.path.isfile(data) and os.path.isfile(index)):
            raise ExecutionError(f"WordNet not found at {root} (no data.noun / index.noun); {WORDNET_HINT}")
        self._raw: dict[str, str] = {}
        with open(data, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" ") or len(line) < 9:
                    continue
                self._raw[line[:8]] = line
        self._senses: dict[str, list[str]] = {}     # lemma -> offsets in sense order
        with open(index, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                parts = line.split()
                if len(parts) < 4:
                    continue
                n_syn, n_ptr = int(parts[2]), int(parts[3])
                offsets = parts[4 + n_ptr + 2:]
                self._senses[parts[0]] = offsets[:n_syn]
        self._by_offset: dict[str, Synset] = {}

    def _parse(self, offset: str) -> Synset | None:
        if offset in self._by_offset:
            return self._by_offset[offset]
        line = self._raw.get(offset)
        if line is None:
            return None
        body, _, gloss = line.partition(" | ")
        parts = body.split()
        w_cnt = int(parts[3], 16)
        lemmas = [parts[4 + 2 * i] for i in range(w_cnt)]
        pos = 4 + 2 * w_cnt
        p_cnt = int(parts[pos])
        hyper = []
        for i in range(p_cnt):
            sym, off, ppos = parts[pos + 1 + 4 * i: pos + 4 + 4 * i]
            if sym in ("@", "@i") and ppos == "n":
                hyper.append("n" + off)
        definition = gloss.strip().split('; "')[0].strip()
        lemma = lemmas[0].lower()
        senses = self._senses.get(lemma, [])
        num = senses.index(offset) + 1 if offset in senses else 1
        syn = Synset("n" + offset, f"{lemma}.n.{num:02d}", lemmas, definition, hyper)
        self._by_offset[offset] = syn
        return syn

    def synset(self, key: str) -> Synset | None:
        """A noun synset by WordNet id (``n02084071``) or name (``dog.n.01``)."""
        if _WNID.match(key):
            return self._parse(key[1:])
        m = _SYNSET.match(key)
        if m:
            senses = self._senses.get(m.group(1).lower(), [])
            i = int(m.group(2)) - 1
            return self._parse(senses[i]) if 0 <= i < len(senses) else None
        return None

    def first_sense(self, word: str) -> Synset | None:
        senses = self._senses.get(str(word).strip().lower().replace(" ", "_"), [])
        return self._parse(senses[0]) if senses else None

    def ancestors(self, wnid: str) -> set[str]:
        out, todo = set(), [wnid]
        while todo:
            syn = self.synset(todo.pop())
            for h in (syn.hypernyms if syn else []):
                if h not in out:
                    out.add(h)
                    todo.append(h)
        return out


@functools.lru_cache(maxsize=4)
def load_wordnet(root: str) -> WordNet:
    return WordNet(root)


def try_wordnet(explicit: str | None = None) -> WordNet | None:
    try:
        return load_wordnet(wordnet_path(explicit))
    except ExecutionError:
        return None


# ---- reading a graph folder -----------------------------------------------------------------

def _images_of(folder: str, sub: str, limit: int) -> list[str]:
    d = os.path.join(folder, sub)
    names = sorted(n for n in os.listdir(d)
                   if n.lower().endswith(IMAGE_EXTS) and not n.startswith(".") and os.path.isfile(os.path.join(d, n)))
    return [f"{sub}/{n}" for n in names[:limit]]


def hash_files(folder: str, rel_paths: list[str]) -> str:
    h = hashlib.sha256()
    for rel in rel_paths:
        h.update(rel.encode())
        with open(os.path.join(folder, rel), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:32]


def _read_graph_file(folder: str) -> list[Node] | None:
    for fname in GRAPH_FILES:
        path = os.path.join(folder, fname)
        if not os.path.isfile(path):
            continue
        try:
            if fname.endswith(".json"):
                with open(path, encoding="utf-8") as f:
                    rows = json.load(f)
                if isinstance(rows, dict):
                    rows = rows.get("nodes", [])
            else:
                with open(path, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
        except (OSError, ValueError) as exc:
            raise ExecutionError(f"cannot read graph file {path}: {exc}") from None
        nodes = []
        for i, r in enumerate(rows):
            if not isinstance(r, dict) or not r.get("id"):
                raise ExecutionError(f"{path}: node {i + 1} has no 'id' (columns id, name, definition, parent)")
            parent = r.get("parent")
            if isinstance(parent, str):
                parent = [p for p in re.split(r"[;|]", parent) if p.strip()]
            nodes.append(Node(str(r["id"]), str(r.get("name") or r["id"]), str(r.get("definition") or ""),
                              [str(p).strip() for p in (parent or [])]))
        return nodes
    return None


def read_graph_folder(folder: str, *, root: str | None = None, max_images: int = DEFAULT_MAX_IMAGES,
                      wordnet: str | None = None) -> tuple[list[Node], str]:
    """The nodes of a graph folder (those with at least one image), sorted by id, and where
    their names came from (``'graph.json'`` / ``'graph.csv'`` / ``'wordnet:<path>'``)."""
    if not os.path.isdir(folder):
        raise ExecutionError(f"graph folder not found: {folder}")
    subs = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    declared = _read_graph_file(folder)
    nodes: dict[str, Node] = {}
    if declared is not None:
        origin = next(f for f in GRAPH_FILES if os.path.isfile(os.path.join(folder, f)))
        by_id = {n.id: n for n in declared}
        for d in subs:
            if d in by_id:
                nodes[d] = by_id[d]
        unknown = [d for d in subs if d not in by_id]
        if unknown:
            raise ExecutionError(f"image folder(s) {', '.join(unknown[:5])} of {folder} are not nodes of its {origin}")
        ancestors = {}
        for n in declared:
            seen, todo = set(), list(n.parents)
            while todo:
                p = todo.pop()
                if p in by_id and p not in seen:
                    seen.add(p)
                    todo.extend(by_id[p].parents)
            ancestors[n.id] = seen
    else:
        wn = load_wordnet(wordnet_path(wordnet))
        origin = f"wordnet:{wn.root}"
        bad = []
        ancestors = {}
        for d in subs:
            syn = wn.synset(d)
            if syn is None:
                bad.append(d)
                continue
            nodes[d] = Node(d, syn.name.split(".")[0], syn.definition, list(syn.hypernyms))
            up = wn.ancestors(syn.wnid)
            ancestors[d] = up | {wn.synset(a).name for a in up} | {syn.wnid, syn.name}
        if bad:
            raise ExecutionError(f"sub-folder(s) {', '.join(bad[:5])} of {folder} name no WordNet noun synset "
                                 f"(expected ids like n02084071 or names like dog.n.01)")
        if root is not None:
            rs = wn.synset(root)
            if rs is None:
                raise ExecutionError(f"ROOT {root!r} is not a WordNet noun synset (e.g. 'entity.n.01')")
            root = rs.wnid
    if root is not None:
        keep = {}
        for nid, n in nodes.items():
            if root == nid or root in ancestors.get(nid, set()):
                keep[nid] = n
        if not keep and declared is not None and root not in {n.id for n in declared}:
            raise ExecutionError(f"ROOT {root!r} is not a node of the graph file")
        nodes = keep
    out = []
    for nid in sorted(nodes):
        n = nodes[nid]
        n.images = _images_of(folder, nid, max_images)
        if not n.images:
            continue
        n.images_hash = hash_files(folder, n.images)
        out.append(n)
    if not out:
        raise ExecutionError(f"no node images in {folder} (expected <folder>/<wordnet id>/<image>, e.g. "
                             f"n02084071/1.jpg{', under ROOT ' + repr(root) if root else ''})")
    return out, origin
