"""ProbeLog (Kahana et al.): probe sets, PROBE, FIND LOGITS/MODELS, collaborative probing
(REFRESH DESCRIPTORS), descriptor matrices and HNSW indexes."""
from zooql.core.kinds import ObjectKind
from zooql.methods.registry import Method
from zooql.methods.probelog import objects as _objects

METHOD = Method(
    name="probelog",
    package=__name__,
    statements=("CREATE PROBE SET", "PROBE", "FIND", "REFRESH DESCRIPTORS"),
    modules=("bind", "find_images"),
    settings={"aligner": str, "probe_set": str, "descriptor_dtype": str},
    completions={"probesets": "SELECT name FROM probe_sets ORDER BY 1"},
    hooks={"on_drop": "ops_probe:_drop_hook", "on_describe": "ops_probe:_describe_hook",
           "on_check": "check:check_probe_sets"},
    objects=(ObjectKind("probe set", "probe sets", _objects.LIST_SQL, "objects:describe_probe_set"),),
    tables=("probe_sets", "probes", "probe_runs", "descriptor_columns", "probe_masks", "probe_factors"),
)
