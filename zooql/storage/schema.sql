-- ZooQL catalog schema (format version: storage/hub.py FORMAT_VERSION). Later versions add tables and columns idempotently.
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE SEQUENCE IF NOT EXISTS model_ids START 1;
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY DEFAULT nextval('model_ids'),
    name VARCHAR NOT NULL UNIQUE,
    source VARCHAR NOT NULL,
    checkpoint VARCHAR,
    loadable BOOLEAN NOT NULL,
    tree VARCHAR,
    parent VARCHAR,
    downloads BIGINT,
    task VARCHAR,
    family VARCHAR,
    params BIGINT,
    num_logits INTEGER,
    input_size INTEGER,
    preprocess JSON,
    tags JSON,
    description VARCHAR,
    added_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS logits (
    model_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    label VARCHAR,
    PRIMARY KEY (model_id, idx)
);
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY,
    description VARCHAR,
    domain VARCHAR,
    tags JSON
);
CREATE TABLE IF NOT EXISTS evaluations (
    model VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    score DOUBLE,
    split VARCHAR,
    source VARCHAR
);
CREATE TABLE IF NOT EXISTS outcomes (
    model VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    query_id VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    origin VARCHAR DEFAULT 'imported'
);
CREATE TABLE IF NOT EXISTS settings (key VARCHAR PRIMARY KEY, value JSON);
-- Tasks (CREATE TASK): used by DISCOVER and RANK MODELS ... USING CONDUCTANCE.
-- A task is a pool of queries plus a way to score a model on them (its evaluator).
CREATE TABLE IF NOT EXISTS tasks (
    name VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,          -- 'images' (labelled image set) | 'queries' (.jsonl)
    path VARCHAR,                   -- where the queries came from (npz: the copy inside the hub)
    evaluator VARCHAR NOT NULL,     -- 'exact_match' | 'python:<module or file.py>:<function>'
    n_queries INTEGER NOT NULL,
    fingerprint VARCHAR NOT NULL,   -- content hash: a changed definition starts a fresh cache
    info JSON,
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS task_queries (
    task VARCHAR NOT NULL,
    idx INTEGER NOT NULL,           -- position in the pool (0-based)
    query_id VARCHAR NOT NULL,
    query JSON
);
-- Views (CREATE VIEW name AS SELECT ...): the query text, parsed and bound again on every use.
CREATE TABLE IF NOT EXISTS views (
    name VARCHAR PRIMARY KEY,
    query VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);
