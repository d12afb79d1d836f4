"""ProbeLog's named objects: probe sets (SHOW PROBE SETS, DESCRIBE PROBE SET name)."""
from __future__ import annotations

LIST_SQL = ("SELECT p.name, p.n_probes AS probes, p.shape, p.source, "
            "(SELECT count(*) FROM probe_runs r WHERE r.probe_set_id = p.id) AS probed_models, "
            "(SELECT count(*) FROM probes q WHERE q.probe_set_id = p.id AND q.caption IS NOT NULL) AS captions, "
            "p.created_at FROM probe_sets p ORDER BY p.name")


_CAPTIONS_FROM = {"folders": "the class folder names", "column": "the parquet caption column"}


def describe_probe_set(con, name: str) -> list[tuple]:
    from zooql.storage import catalog as C

    r = con.execute("SELECT id, name, source, n_probes, shape, dtype, dir, content_hash, probe_limit, seed, "
                    "captions, descriptor_dtype, created_at FROM probe_sets WHERE name = ?", [name]).fetchone()
    pid = r[0]
    n_cap = con.execute("SELECT count(*) FROM probes WHERE probe_set_id = ? AND caption IS NOT NULL",
                        [pid]).fetchone()[0]
    first = con.execute("SELECT string_agg(DISTINCT caption, ', ' ORDER BY caption) FROM (SELECT caption FROM "
                        "probes WHERE probe_set_id = ? AND caption IS NOT NULL LIMIT 1000)", [pid]).fetchone()[0]
    models = [x[0] for x in con.execute("SELECT m.name FROM probe_runs r JOIN models m ON m.id = r.model_id "
                                        "WHERE r.probe_set_id = ? ORDER BY m.name", [pid]).fetchall()]
    default = C.get_setting(con, "probe_set")
    out = [("name", r[1]), ("source", r[2]), ("probes", r[3]), ("shape", r[4]), ("dtype", r[5]),
           ("limit", r[8]), ("seed", r[9]), ("captions", f"{n_cap} of {r[3]}" + (f" (from {_CAPTIONS_FROM.get(r[10], r[10])})" if r[10] else "")),
           ("caption_values", (first[:300] + ("..." if len(first) > 300 else "")) if first else None),
           ("probed_models", f"{len(models)}" + (": " + ", ".join(models[:20]) + (", ..." if len(models) > 20 else "")
                                                 if models else "")),
           ("hub_default", "true" if default == r[1] else "false"),
           ("descriptor_dtype", r[11]), ("content_hash", r[7][:16]), ("dir", r[6]), ("created_at", r[12])]
    return out
