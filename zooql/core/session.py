"""Settings of one connection (``Hub.session``), not stored in the hub."""
from __future__ import annotations

from dataclasses import dataclass

from zooql.plan.nodes import Operator, Rows


@dataclass(frozen=True)
class SetSessionOption(Operator):
    """SET of a setting that belongs to this connection, not to the hub (``lock_timeout``:
    seconds a writing statement waits for another writer's lock; 0, the default, fails at
    once). It takes no lock, so it works while another process writes."""

    key: str = ""
    value: object = None

    def explain_params(self):
        return {"key": self.key, "value": self.value, "scope": "session"}

    def run(self, ctx, inputs):
        if self.value is None:
            ctx.session.pop(self.key, None)
        else:
            ctx.session[self.key] = self.value
        return Rows(["key", "value"], [(self.key, self.value)],
                    message=f"set {self.key} = {self.value!r} (this connection)")
