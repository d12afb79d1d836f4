"""ProbeLog (Kahana et al.): probe sets, PROBE, FIND LOGITS/MODELS, collaborative probing
(REFRESH DESCRIPTORS), descriptor matrices and HNSW indexes, VACUUM."""
from zooql.core.kinds import ObjectKind
from zooql.methods.registry import Method
from zooql.methods.probelog import objects as _objects

METHOD = Method(
    name="probelog",
    package=__name__,
    statements=("CREATE PROBE SET", "PROBE", "FIND", "REFRESH DESCRIPTORS", "VACUUM"),
    modules=("bind", "find_images"),
    settings={"aligner": str, "probe_set": str, "descriptor_dtype": str, "probe_commit_interval": float,
              "find_shards": int, "find_shard_mb": float},
    completions={"probesets": "SELECT name FROM probe_sets ORDER BY 1"},
    hooks={"on_drop": "ops_probe:_drop_hook", "on_describe": "ops_probe:_describe_hook",
           "on_check": "check:check_probe_sets"},
    objects=(ObjectKind("probe set", "probe sets", _objects.LIST_SQL, "objects:describe_probe_set"),),
    tables=("probe_sets", "probes", "probe_runs", "descriptor_columns", "probe_masks", "probe_factors",
            "probe_raw_files"),
    relations={"probe_sets": "SELECT name, source, n_probes, shape, dtype, probe_limit, seed, captions FROM probe_sets",
               "probe_runs": "SELECT ps.name AS probe_set, m.name AS model, r.n_cols, r.device, r.seconds, r.probed_at "
                             "FROM probe_runs r JOIN probe_sets ps ON ps.id = r.probe_set_id JOIN models m ON m.id = r.model_id"},
)
