"""Planners of the catalog statements: bound statement -> operator tree.

Small pure functions, one per statement kind, tagged with :func:`zooql.plan.hooks.plans`
(the method registry collects them with the methods' own).
"""
from __future__ import annotations

from zooql.core import binder as B
from zooql.core import ops as O
from zooql.plan.hooks import plans
from zooql.plan.nodes import Operator


#: SHOW TREES lists this many roots of a tree by name, then how many more it has
SHOW_TREE_ROOTS = 5

_SHOW_MODEL_COLUMNS = ("name", "source", "tree", "parent", "downloads", "task", "params",
                       "num_logits", "loadable")


@plans(B.BoundAddModels)
def _plan_add(b: B.BoundAddModels) -> Operator:
    if b.path:
        return O.InsertModels(child=O.InspectModels(child=O.ReadModelsFile(path=b.path)))
    loadable = sum(1 for s in b.specs if not O.is_name_only(s["source"]))
    return O.InsertModels(child=O.InspectModels(child=O.ModelValues(specs=b.specs),
                                                loadable=loadable, name_only=len(b.specs) - loadable))


@plans(B.BoundShow)
def _plan_show(b: B.BoundShow) -> Operator:
    if b.what == "models":
        sql = f"SELECT {', '.join(_SHOW_MODEL_COLUMNS)} FROM models"
        params: list = []
        if b.where:
            sql += f" WHERE {b.where.sql}"
            params += b.where.params
        if b.order:
            sql += " ORDER BY " + ", ".join(f"{s} {'DESC' if d else 'ASC'}" for s, _, d, _ in b.order)
            for _, p, _, _ in b.order:
                params += list(p)
            sql += ", name"
        else:
            sql += " ORDER BY name"
        if b.limit is not None:
            sql += f" LIMIT {int(b.limit)}"
        order = ", ".join(f"{t} {'DESC' if d else 'ASC'}" for _, _, d, t in b.order) or None
        return O.CatalogScan(table="models", sql=sql, params=tuple(params), columns=_SHOW_MODEL_COLUMNS,
                             filter=b.where_text, order=order, limit=b.limit)
    if b.what == "trees":
        # roots: models whose parent is not in the tree; the first SHOW_TREE_ROOTS by name, then
        # how many more (a tree of a million models may have a third of them as roots)
        n = SHOW_TREE_ROOTS
        sql = ("WITH m AS (SELECT m.tree, m.name, m.downloads, (m.parent IS NULL OR p.name IS NULL) AS root "
               "FROM models m LEFT JOIN models p ON p.name = m.parent AND p.tree = m.tree WHERE m.tree IS NOT NULL), "
               "g AS (SELECT tree, count(*) AS models, count(*) FILTER (WHERE root) AS n_roots, "
               f"list_sort(min(name, {n}) FILTER (WHERE root)) AS first_roots, max(downloads) AS max_downloads "
               "FROM m GROUP BY tree) "
               "SELECT tree, models, array_to_string(first_roots, ', ') || CASE WHEN n_roots > "
               f"{n} THEN ', ... (+' || (n_roots - {n}) || ' more)' ELSE '' END AS roots, max_downloads "
               "FROM g ORDER BY models DESC, tree")
        return O.CatalogScan(table="models", sql=sql, columns=("tree", "models", "roots", "max_downloads"),
                             order="models DESC")
    sql = ("WITH names AS (SELECT name FROM datasets UNION SELECT dataset FROM evaluations "
           "UNION SELECT dataset FROM outcomes) "
           "SELECT n.name, (SELECT count(*) FROM evaluations e WHERE e.dataset = n.name) AS evaluations, "
           "(SELECT count(DISTINCT model) FROM evaluations e WHERE e.dataset = n.name) AS models, "
           "(SELECT string_agg(DISTINCT metric, ', ' ORDER BY metric) FROM evaluations e WHERE e.dataset = n.name) AS metrics, "
           "(SELECT count(*) FROM outcomes o WHERE o.dataset = n.name) AS outcomes, "
           "d.description FROM names n LEFT JOIN datasets d ON d.name = n.name ORDER BY n.name")
    return O.CatalogScan(table="datasets", sql=sql,
                         columns=("dataset", "evaluations", "models", "metrics", "outcomes", "description"))


@plans(B.BoundName)
def _plan_named(b: B.BoundName) -> Operator:
    if b.what == "describe_model":
        return O.DescribeModel(model=b.name)
    if b.what == "describe_dataset":
        return O.DescribeDataset(dataset=b.name)
    return O.DropModel(model=b.name, if_exists=b.if_exists)


@plans(B.BoundAlter)
def _plan_alter(b: B.BoundAlter) -> Operator:
    if b.what == "model":
        return O.AlterModel(model=b.name, assignments=b.assignments)
    return O.AlterDataset(dataset=b.name, assignments=b.assignments)


@plans(B.BoundImport)
def _plan_import(b: B.BoundImport) -> Operator:
    return O.ImportTable(kind=b.kind, path=b.path, source=b.source, on_conflict=b.on_conflict)


@plans(B.BoundSet)
def _plan_set(b: B.BoundSet) -> Operator:
    if b.key in SESSION_SETTINGS:  # needs no writer lock: it says how to wait for one
        from zooql.core.session import SetSessionOption

        return SetSessionOption(key=b.key, value=b.value)
    return O.SetOption(key=b.key, value=b.value)


#: Settings of the connection only (not stored in the hub).
SESSION_SETTINGS = ("lock_timeout", "executor", "ray_address", "ray_workers", "ray_gpus_per_worker", "ray_ship_files",
                    "local_workers")
