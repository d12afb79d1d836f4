-- MLL (Model Label Learning): semantic graphs, per-model node embeddings and labels, tasks.
-- See docs/vlm_selection.md. Rows are rewritten with DELETE + INSERT inside one statement's
-- transaction (no primary keys on the rewritten tables: DuckDB checks keys eagerly).
CREATE SEQUENCE IF NOT EXISTS mll_graph_ids START 1;
CREATE TABLE IF NOT EXISTS mll_graphs (
    id INTEGER PRIMARY KEY DEFAULT nextval('mll_graph_ids'),
    name VARCHAR NOT NULL UNIQUE,
    folder VARCHAR NOT NULL,          -- the image folder the nodes' images are read from
    origin VARCHAR NOT NULL,          -- graph.json | graph.csv | wordnet:<dict folder>
    root VARCHAR,
    max_images INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS mll_nodes (
    graph_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,             -- node order (column of the label vectors)
    node VARCHAR NOT NULL,            -- WordNet id / synset name / graph-file id (= image sub-folder)
    name VARCHAR NOT NULL,
    definition VARCHAR,
    caption VARCHAR NOT NULL,         -- "{name} which is {definition}"
    parents VARCHAR,                  -- JSON list of hypernym ids
    images VARCHAR NOT NULL,          -- JSON list of image paths relative to the folder
    n_images INTEGER NOT NULL,
    images_hash VARCHAR NOT NULL,
    sentence_emb BLOB                 -- MiniLM caption embedding (float32), NULL until first used
);
CREATE TABLE IF NOT EXISTS mll_embeddings (
    graph_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    node VARCHAR NOT NULL,
    images_hash VARCHAR NOT NULL,     -- the node's images these embeddings are of
    caption VARCHAR NOT NULL,         -- the caption text_emb is of
    n_images INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    image_emb BLOB NOT NULL,          -- float16 [n_images, dim], L2-normalised
    text_emb BLOB NOT NULL            -- float32 [dim], L2-normalised
);
CREATE TABLE IF NOT EXISTS mll_labels (
    graph_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    node VARCHAR NOT NULL,
    "precision" DOUBLE,               -- p_{m,v} (Eq. 2-5)
    n_images INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mll_label_runs (
    graph_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    n_nodes INTEGER NOT NULL,         -- nodes of the graph the label covers
    nodes_hash VARCHAR NOT NULL,      -- hash of the graph's (node, images_hash, caption) when labelled
    image_passes BIGINT NOT NULL,     -- forward passes the last LABEL spent on this model
    seconds DOUBLE,
    labelled_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS mll_tasks (
    name VARCHAR NOT NULL,
    graph_id INTEGER NOT NULL,
    classes VARCHAR NOT NULL,         -- JSON list
    captions VARCHAR NOT NULL,        -- JSON list (one per class)
    domain VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
);
