"""Workflows: orchestration only (waiting, branching, timers, calling activities)."""
