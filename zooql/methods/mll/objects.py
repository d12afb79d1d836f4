"""MLL's named objects: semantic graphs (SHOW SEMANTIC GRAPHS, DESCRIBE SEMANTIC GRAPH name)."""
from __future__ import annotations

LIST_SQL = ("SELECT g.name, (SELECT count(*) FROM mll_nodes n WHERE n.graph_id = g.id) AS nodes, g.origin, g.root, "
            "(SELECT count(*) FROM mll_label_runs l WHERE l.graph_id = g.id) AS labelled_models, g.folder, "
            "g.created_at FROM mll_graphs g ORDER BY g.name")


def describe_graph(con, name: str) -> list[tuple]:
    r = con.execute("SELECT id, name, folder, origin, root, max_images, created_at FROM mll_graphs WHERE name = ?",
                    [name]).fetchone()
    gid = r[0]
    nodes, images = con.execute("SELECT count(*), coalesce(sum(n_images), 0) FROM mll_nodes WHERE graph_id = ?",
                                [gid]).fetchone()
    sample = [x[0] for x in con.execute("SELECT name FROM mll_nodes WHERE graph_id = ? ORDER BY idx LIMIT 10",
                                        [gid]).fetchall()]
    models = [x[0] for x in con.execute("SELECT m.name FROM mll_label_runs l JOIN models m ON m.id = l.model_id "
                                        "WHERE l.graph_id = ? ORDER BY m.name", [gid]).fetchall()]
    return [("name", r[1]), ("folder", r[2]), ("origin", r[3]), ("root", r[4]), ("max_images", r[5]),
            ("nodes", nodes), ("images", images), ("first_nodes", ", ".join(sample) or None),
            ("labelled_models", f"{len(models)}" + (": " + ", ".join(models) if models else "")),
            ("created_at", r[6])]
