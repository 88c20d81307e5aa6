"""The two-way sync engine: three trees (local, remote, synced), a pure planner, an executor."""
