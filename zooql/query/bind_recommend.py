"""Binder and planner registration for the recommend statements (filled in by its issue)."""
