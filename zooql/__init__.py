"""ZooQL: an embedded search engine with an SQL-like language over a hub of ML models."""
from zooql.errors import (BindError, Cancelled, ExecutionError, ParseError, SecurityError,
                          StorageError, ZooQLError)

__version__ = "0.1.0"
__all__ = ["connect", "Hub", "Result", "ZooQLError", "ParseError", "BindError", "ExecutionError",
           "SecurityError", "StorageError", "Cancelled", "parse", "__version__"]


def __getattr__(name):
    # The API (DuckDB, numpy) loads on first use, so ``import zooql.lang`` stays light.
    if name in ("connect", "Hub", "Result"):
        from zooql import api

        return getattr(api, name)
    if name == "parse":
        from zooql.methods.registry import parse

        return parse
    raise AttributeError(f"module 'zooql' has no attribute {name!r}")
