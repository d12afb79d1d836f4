"""Hidden Gems (Kahana et al.): DISCOVER BEST ... IN TREE ... ON task BUDGET n, with the
paper's successive-halving schedule and the project's adaptive strategies."""
from zooql.methods.registry import Method

METHOD = Method(
    name="hidden_gems",
    package=__name__,
    statements=("DISCOVER",),
    modules=("bind",),
    hooks={"on_drop": "ops:_drop_cached", "on_check": "check:check_outcome_cache"},
    tables=("discover_cache",),
    relations={"discover_outcomes": "SELECT task, model, query_id, score, evaluated_at FROM discover_cache"},
)
