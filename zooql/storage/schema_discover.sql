-- DISCOVER (Hidden Gems): tasks, their queries, and the outcome cache.
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
-- Every (model, query) evaluation DISCOVER has paid for. Live tasks store the score they
-- computed; recorded tasks (imported outcomes, fingerprint 'recorded') store the replayed
-- score so that a repeated search knows the evaluation was already spent.
CREATE TABLE IF NOT EXISTS discover_cache (
    task VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    model_id INTEGER NOT NULL,
    model VARCHAR NOT NULL,
    query_id VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    evaluated_at TIMESTAMP DEFAULT current_timestamp
);
