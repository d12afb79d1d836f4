"""Plans: operator nodes and their printers (:mod:`nodes`), typed registration of binders
and planners (:mod:`hooks`), logical plans and rewrite rules (:mod:`logical`, :mod:`rules`)."""
