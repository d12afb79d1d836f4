-- ProbeLog (FIND): probe sets, per-model probe runs and the descriptor column map.
-- The descriptors themselves live beside the catalog in <hub>/<probe_sets.dir>/ (see docs/find.md).
CREATE SEQUENCE IF NOT EXISTS probe_set_ids START 1;
CREATE TABLE IF NOT EXISTS probe_sets (
    id INTEGER PRIMARY KEY DEFAULT nextval('probe_set_ids'),
    name VARCHAR NOT NULL UNIQUE,
    source VARCHAR NOT NULL,          -- 'folder:<path>', 'npy:<path>', 'parquet:<path>' or 'builtin:v<version>'
    n_probes INTEGER NOT NULL,
    shape VARCHAR NOT NULL,           -- shape of one probe image, e.g. '[8, 8]' or '[224, 224, 3]'
    dtype VARCHAR NOT NULL,           -- probe image dtype (uint8 or float32)
    dir VARCHAR NOT NULL,             -- folder of probes.npy, descriptors/, raw/, hnsw/ (relative to the hub)
    content_hash VARCHAR NOT NULL,    -- sha256 over the ordered per-probe hashes
    probe_limit INTEGER,
    seed BIGINT,
    captions VARCHAR,                 -- captions file the set was created with (NULL: none)
    descriptor_dtype VARCHAR NOT NULL DEFAULT 'float16',
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS probes (
    probe_set_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,             -- probe order (row of the descriptor matrix)
    name VARCHAR,                     -- file (relative path), row number or builtin id
    sha256 VARCHAR NOT NULL,
    caption VARCHAR,
    PRIMARY KEY (probe_set_id, idx)
);
CREATE TABLE IF NOT EXISTS probe_runs (
    probe_set_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    first_col BIGINT NOT NULL,        -- descriptor column of logit 0; logit i is first_col + i
    n_cols INTEGER NOT NULL,
    raw_file VARCHAR,                 -- raw logits float32 (relative to the hub): [n_probes, n_cols], or a
                                      -- commit group's file (probe_raw_files) when raw_col is set
    device VARCHAR,
    seconds DOUBLE,
    probed_at TIMESTAMP DEFAULT current_timestamp,
    raw_col BIGINT,                   -- column of logit 0 in a group file raw_file (NULL: the file is this run's alone)
    PRIMARY KEY (probe_set_id, model_id)
);
ALTER TABLE probe_runs ADD COLUMN IF NOT EXISTS raw_col BIGINT;
-- Raw logits of one PROBE commit group: one float32 file [n_probes, n_cols] holding the logits of
-- every model the group committed side by side (probe_runs.raw_col says where each starts).
CREATE TABLE IF NOT EXISTS probe_raw_files (
    probe_set_id INTEGER NOT NULL,
    file VARCHAR NOT NULL,            -- relative to the hub, <dir>/raw/g<first descriptor column>.npy
    n_cols BIGINT NOT NULL,
    bytes BIGINT NOT NULL,            -- size of the file and SHA-256 of its bytes (CHECK HUB compares them)
    sha256 VARCHAR NOT NULL,
    PRIMARY KEY (probe_set_id, file)
);
CREATE TABLE IF NOT EXISTS descriptor_columns (
    probe_set_id INTEGER NOT NULL,
    col BIGINT NOT NULL,
    model_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (probe_set_id, col)
);
-- Collaborative probing (PROBE ... SAMPLE p PERCENT): which probes a model really ran on.
-- Its raw logits hold NaN at the unobserved probes; its descriptors are completed (docs/find.md).
CREATE TABLE IF NOT EXISTS probe_masks (
    probe_set_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    sample_pct DOUBLE NOT NULL,
    seed BIGINT NOT NULL,
    n_observed INTEGER NOT NULL,      -- probes observed (the rest are completed)
    mask_file VARCHAR NOT NULL,       -- bool [n_probes] (relative to the hub)
    completion VARCHAR,               -- provisional | fold-in | refit
    PRIMARY KEY (probe_set_id, model_id)
);
-- The probe factors of the last completion fit (file in <dir>/completion/, see zooql/methods/probelog/completion.py).
CREATE TABLE IF NOT EXISTS probe_factors (
    probe_set_id INTEGER PRIMARY KEY,
    method VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    reg DOUBLE NOT NULL,
    iters INTEGER NOT NULL,
    n_rows BIGINT NOT NULL,           -- logits the factors were fitted on
    fitted_at TIMESTAMP DEFAULT current_timestamp,
    penalty VARCHAR                   -- meaning of reg: 'constant'; NULL = written before that (reg x n_observed)
);
ALTER TABLE probe_factors ADD COLUMN IF NOT EXISTS penalty VARCHAR;
