"""Directional Conductance Divergence: RANK MODELS FOR TASK t USING CONDUCTANCE (captum
layer conductance of open_clip visual encoders, cached per (model, task))."""
from zooql.methods.registry import Method

METHOD = Method(
    name="dcd",
    package=__name__,
    statements=("RANK MODELS",),
    modules=("bind",),
    hooks={"on_drop": "ops:_drop_hook", "on_check": "check:check_vectors"},
    tables=("dcd_vectors",),
    relations={"conductance_vectors": "SELECT model, task, n_images, steps, blocks, vector FROM dcd_vectors"},
)
