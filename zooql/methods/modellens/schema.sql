-- RECOMMEND / TRAIN RECOMMENDER (ModelLens): the trained recommender cached in the hub.
-- One row per method (today only 'modellens'); the state_dict lives beside the catalog in
-- recommender/<file> (.npz, written atomically). The row is valid while `fingerprint`
-- equals the fingerprint of the evaluations table and of the side information the model
-- was trained on (descriptions of evaluated datasets, metadata of evaluated models) and
-- `stale` is false (IMPORT EVALUATIONS sets it).
CREATE TABLE IF NOT EXISTS recommenders (
    name VARCHAR PRIMARY KEY,
    fingerprint VARCHAR NOT NULL,
    config JSON NOT NULL,
    file VARCHAR NOT NULL,
    records BIGINT,
    models INTEGER,
    datasets INTEGER,
    metrics INTEGER,
    train_seconds DOUBLE,
    stale BOOLEAN NOT NULL DEFAULT false,
    trained_at TIMESTAMP DEFAULT current_timestamp
);
-- Side features of evaluated models that came as extra columns of an evaluations file
-- (family, params_m, pretrain, ...): one JSON object per model, read by RECOMMEND.
CREATE TABLE IF NOT EXISTS model_features (
    model VARCHAR PRIMARY KEY,
    features JSON NOT NULL
);
-- size and SHA-256 of the cached .npz, checked on load (size) and by CHECK HUB (both);
-- NULL in rows written before they were recorded.
ALTER TABLE recommenders ADD COLUMN IF NOT EXISTS size BIGINT;
ALTER TABLE recommenders ADD COLUMN IF NOT EXISTS sha256 VARCHAR;
