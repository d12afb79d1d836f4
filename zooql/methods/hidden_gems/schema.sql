-- DISCOVER (Hidden Gems): the outcome cache (tasks are core: storage/schema.sql).
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
