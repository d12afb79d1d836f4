"""Imports the binder/planner modules of each method so that their statements register
themselves (``binders.binds`` / ``planner.plans``). Each is a separate module per paper."""
from zooql.query import bind_discover, bind_find, bind_recommend  # noqa: F401
from zooql.query import bind_dcd  # noqa: F401  (RANK MODELS ... USING CONDUCTANCE)
from zooql.query import bind_mll  # noqa: F401  (MLL: semantic graphs, LABEL / SELECT / CLASSIFY)
