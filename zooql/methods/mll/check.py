"""CHECK HUB for MLL (the ``on_check`` hook): each semantic graph's image folder against the
hashes its nodes recorded, the stored embeddings (their byte sizes against their shapes),
labels and label runs that name no model or graph. Rows: (severity, object, file, problem,
fix). The embeddings live in the catalog; the images are the user's folder."""
from __future__ import annotations

import os

from zooql.methods.mll.ops import graph_nodes, tables_exist

RELABEL = "LABEL MODELS ON GRAPH {g} recomputes damaged embeddings"


def check_graphs(ctx) -> list[tuple]:
    con = ctx.con
    if not tables_exist(con):
        return []
    out: list[tuple] = []
    catalog = str(ctx.store.catalog_path)
    graphs = con.execute("SELECT id, name, folder FROM mll_graphs ORDER BY name").fetchall()
    for gid, name, folder in graphs:
        out += _check_images(gid, name, folder, graph_nodes(con, gid))
        out += _check_embeddings(con, gid, name, catalog)
    for table in ("mll_embeddings", "mll_labels", "mll_label_runs"):
        n = con.execute(f"SELECT count(*) FROM {table} WHERE model_id NOT IN (SELECT id FROM models) "
                        f"OR graph_id NOT IN (SELECT id FROM mll_graphs)").fetchone()[0]
        if n:
            out.append(("warning", table, catalog, f"{n} rows name a model or graph that no longer exists",
                        "they are never read; DROP MODEL did not finish (report it if it repeats)"))
    return out


def _check_images(gid: int, name: str, folder: str, nodes: list[dict]) -> list[tuple]:
    from zooql.methods.mll.semantic_graph import hash_files

    obj = f"semantic graph {name}"
    fix = f"restore the images, or CREATE OR REPLACE SEMANTIC GRAPH {name} FROM '{folder}'"
    if not os.path.isdir(folder):
        return [("warning", obj, folder, "the graph's image folder is missing (LABEL MODELS needs it)", fix)]
    out = []
    for n in nodes:
        missing = [p for p in n["images"] if not os.path.isfile(os.path.join(folder, p))]
        if missing:
            out.append(("warning", obj, os.path.join(folder, missing[0]),
                        f"node {n['node']}: {len(missing)} image(s) missing (LABEL MODELS needs them)", fix))
            continue
        try:
            changed = hash_files(folder, n["images"]) != n["images_hash"]
        except OSError as exc:
            out.append(("warning", obj, os.path.join(folder, n["images"][0]) if n["images"] else folder,
                        f"node {n['node']}: images unreadable ({exc})", fix))
            continue
        if changed:
            out.append(("warning", obj, os.path.join(folder, n["node"]),
                        f"node {n['node']}: its images changed since the graph was created", fix))
    return out


def _check_embeddings(con, gid: int, name: str, catalog: str) -> list[tuple]:
    rows = con.execute(
        "SELECT m.name, e.node, e.n_images, e.dim, octet_length(e.image_emb), octet_length(e.text_emb) "
        "FROM mll_embeddings e LEFT JOIN models m ON m.id = e.model_id WHERE e.graph_id = ? ORDER BY 1, 2",
        [gid]).fetchall()
    out = []
    for model, node, k, d, n_img, n_txt in rows:
        if not embedding_sizes_ok(k, d, n_img, n_txt):
            out.append(("error", f"semantic graph {name}", catalog,
                        f"embeddings of model {model} on node {node} are damaged ({n_img} image bytes for "
                        f"{k}x{d} float16, {n_txt} caption bytes for {d} float32)", RELABEL.format(g=name)))
    bad = con.execute("SELECT count(*) FROM mll_nodes WHERE graph_id = ? AND sentence_emb IS NOT NULL "
                      "AND octet_length(sentence_emb) % 4 <> 0", [gid]).fetchone()[0]
    if bad:
        out.append(("error", f"semantic graph {name}", catalog, f"{bad} cached MiniLM node embeddings are damaged",
                    f"CREATE OR REPLACE SEMANTIC GRAPH {name} FROM its folder recomputes them"))
    return out


def embedding_sizes_ok(k, d, n_img, n_txt) -> bool:
    """Whether stored embedding blobs have the bytes their shape (k images x d) needs."""
    return (k is not None and d is not None and k >= 0 and d > 0 and n_img == k * d * 2 and n_txt == d * 4)
