"""Model Label Learning: CREATE SEMANTIC GRAPH, LABEL MODELS, SELECT MODELS FOR TASK ...
USING LABELS and CLASSIFY ... USING LABELS ENSEMBLE k (open_clip VLMs)."""
from zooql.core.kinds import ObjectKind
from zooql.methods.registry import Method
from zooql.methods.mll import objects as _objects

METHOD = Method(
    name="mll",
    package=__name__,
    statements=("CREATE SEMANTIC GRAPH", "LABEL MODELS", "SELECT MODELS FOR TASK", "CLASSIFY"),
    modules=("bind",),
    completions={"graphs": "SELECT name FROM mll_graphs ORDER BY 1"},
    hooks={"on_drop": "ops:_drop_hook", "on_describe": "ops:_describe_hook", "on_check": "check:check_graphs"},
    objects=(ObjectKind("semantic graph", "semantic graphs", _objects.LIST_SQL, "objects:describe_graph"),),
    tables=("mll_graphs", "mll_nodes", "mll_embeddings", "mll_labels", "mll_label_runs", "mll_tasks"),
    relations={"semantic_graphs": "SELECT name, origin, root, max_images, created_at FROM mll_graphs",
               "model_labels": "SELECT g.name AS graph, m.name AS model, l.node, l.\"precision\", l.n_images FROM mll_labels l "
                               "JOIN mll_graphs g ON g.id = l.graph_id JOIN models m ON m.id = l.model_id"},
)
