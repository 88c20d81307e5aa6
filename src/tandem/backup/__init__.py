"""Backups: folders copied to the cloud upload-only, as encrypted snapshots, on a schedule.

Pure parts: `schedule` (durations, when a run is due), `retention` (which snapshots to keep),
`document` (a snapshot's tree as bytes and back). I/O: `local` (config, state and scan cache
in TANDEM_HOME), `run` (one backup run), `restore`, `daemon` (due runs inside `tandem sync`).
"""
