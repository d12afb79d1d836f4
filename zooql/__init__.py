"""ZooQL: an embedded search engine with an SQL-like language over a hub of ML models."""
from zooql.api import Hub, Result, connect
from zooql.errors import (BindError, Cancelled, ExecutionError, ParseError, SecurityError,
                          StorageError, ZooQLError)

__version__ = "0.1.0"
__all__ = ["connect", "Hub", "Result", "ZooQLError", "ParseError", "BindError", "ExecutionError",
           "SecurityError", "StorageError", "Cancelled", "__version__"]
