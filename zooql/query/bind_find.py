"""Binder and planner registration for the find statements (filled in by its issue)."""
