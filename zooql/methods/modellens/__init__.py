"""ModelLens: RECOMMEND MODELS FOR DATASET ... and TRAIN RECOMMENDER (a latent-factor
recommender over leaderboard records with cold-start side features)."""
from zooql.methods.registry import Method

METHOD = Method(
    name="modellens",
    package=__name__,
    statements=("RECOMMEND", "TRAIN RECOMMENDER"),
    modules=("bind",),
    hooks={"on_import": "ops:_on_import", "on_check": "check:check_recommenders"},
    tables=("recommenders", "model_features"),
    relations={"recommenders": "SELECT name, records, models, datasets, metrics, train_seconds, stale, trained_at "
                                 "FROM recommenders"},
)
