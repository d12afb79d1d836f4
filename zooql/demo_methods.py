"""The method sections of the demo (FIND, DISCOVER, RECOMMEND), run when available."""
from __future__ import annotations

from zooql.query.binder import BINDERS
from zooql.query import ast as A


def run_method_demos(hub, show) -> None:
    if A.Find in BINDERS:
        pass
    if A.Discover in BINDERS:
        pass
    if A.Recommend in BINDERS:
        pass
