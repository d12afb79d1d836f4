"""How long new conductance vectors will take, for EXPLAIN RANK MODELS ... USING CONDUCTANCE.

One *pass* is one forward+backward pass of one interpolated image through the visual
encoder for every coarse block (what ``Conductance: passes=`` counts: new models x images x
steps). The seconds per pass of a model come from, in order:

* ``measured``: this hub's own conductance runs of that model (``dcd_vectors.seconds`` over
  its images x steps);
* ``scaled``: the hub's runs of other models, in seconds per pass per parameter, times this
  model's parameter count;
* ``prior``: :data:`PRIOR_SECONDS_PER_PARAM` times the parameter count (that of an
  open_clip ViT-B-32, ~151M, when the count is unknown). The prior is the figure reported
  on a shared 2-core CPU (issue 19): 2 small CLIP ViTs x 7 images x 50 steps took about an
  hour, ~5 s per pass; it is taken as 5.1 s for a ViT-B-32 and scaled by parameter count.
  It is an order of magnitude, not a measurement of this machine; the hub's own
  measurements replace it after the first RANK.
"""
from __future__ import annotations

PRIOR_PARAMS = 151_000_000
PRIOR_SECONDS_PER_PARAM = 5.1 / PRIOR_PARAMS


def pass_seconds(con, models: list[str]) -> dict[str, tuple[float, str]]:
    """model -> (estimated seconds per pass, basis: measured | scaled | prior)."""
    if not models:
        return {}
    marks = ", ".join("?" for _ in models)
    params = {r[0]: r[1] for r in con.execute(f"SELECT name, params FROM models WHERE name IN ({marks})",
                                               list(models)).fetchall()}
    try:
        runs = con.execute("SELECT v.model, sum(v.seconds), sum(v.n_images * v.steps), any_value(m.params) "
                           "FROM dcd_vectors v LEFT JOIN models m ON m.name = v.model "
                           "WHERE v.seconds IS NOT NULL AND v.seconds > 0 GROUP BY v.model").fetchall()
    except Exception:  # a hub without the table
        runs = []
    own = {m: s / n for m, s, n, _ in runs if n}
    per_param = [s / (n * p) for _, s, n, p in runs if n and p]
    rate = sum(per_param) / len(per_param) if per_param else None
    out = {}
    for name in models:
        p = params.get(name) or PRIOR_PARAMS
        if name in own:
            out[name] = (own[name], "measured")
        elif rate is not None:
            out[name] = (rate * p, "scaled")
        else:
            out[name] = (PRIOR_SECONDS_PER_PARAM * p, "prior")
    return out


def fmt_duration(seconds: float) -> str:
    """``~40s``, ``~12min``, ``~1h05m`` (no spaces, for EXPLAIN lines)."""
    if seconds < 60:
        return f"~{max(1, round(seconds))}s"
    if seconds < 3600:
        return f"~{round(seconds / 60)}min"
    h, rem = divmod(round(seconds / 60), 60)
    return f"~{h}h{rem:02d}m"
