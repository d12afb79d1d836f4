-- DCD (RANK MODELS ... USING CONDUCTANCE): one conductance task vector v_{m,tau} per (model, task).
-- A row is reused while its fingerprint (task images, model source/checkpoint, captum steps) matches.
CREATE TABLE IF NOT EXISTS dcd_vectors (
    model VARCHAR NOT NULL,           -- model name
    task VARCHAR NOT NULL,            -- CREATE TASK name
    fingerprint VARCHAR NOT NULL,     -- zooql.methods.dcd.conductance.vector_fingerprint
    n_images INTEGER NOT NULL,
    steps INTEGER NOT NULL,           -- captum LayerConductance n_steps
    blocks VARCHAR[] NOT NULL,        -- coarse block names, in depth order
    vector DOUBLE[] NOT NULL,         -- mean |conductance| per block, averaged over the images
    seconds DOUBLE,
    device VARCHAR,
    computed_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (model, task)
);
