"""Binder and planner registration for the discover statements (filled in by its issue)."""
