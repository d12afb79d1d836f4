-- ZooQL catalog schema, format version 1. Later issues add tables with CREATE ... IF NOT EXISTS.
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
