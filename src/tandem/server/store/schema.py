"""The metadata schema, as numbered migrations applied in order on start.

Plain SQL that SQLite and PostgreSQL both accept, except for the few column types an engine
maps itself (`{blob}`, `{serial}`). A store records the last applied number in
`schema_version`, so adding a migration is appending to `MIGRATIONS`; `migrate` applies the
missing ones in the engine's open write transaction (which the engine makes exclusive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tandem.server.store.tx import Tx


def migrate(tx: Tx, blob: str, serial: str) -> int:
    """Apply every migration not yet applied; returns the schema version now in force."""
    tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    applied = tx.one("SELECT MAX(version) FROM schema_version")[0] or 0
    if applied > len(MIGRATIONS):
        raise RuntimeError(f"the database's schema ({applied}) is newer than this server"
                           f" ({len(MIGRATIONS)}): upgrade Tandem")
    for number, script in enumerate(MIGRATIONS[applied:], start=applied + 1):
        for statement in script.format(blob=blob, serial=serial).split(";"):
            if statement.strip():
                tx.run(statement)
        tx.run("INSERT INTO schema_version (version) VALUES (?)", (number,))
    return len(MIGRATIONS)


MIGRATIONS: list[str] = [
    """
    CREATE TABLE accounts (
        id {serial},
        email TEXT NOT NULL UNIQUE,
        salt {blob} NOT NULL,
        kdf TEXT NOT NULL,
        auth_hash {blob} NOT NULL,
        wrapped_key {blob} NOT NULL,
        recovery_wrapped_key {blob} NOT NULL,
        quota_bytes BIGINT,
        used_bytes BIGINT NOT NULL,
        cursor BIGINT NOT NULL,
        journal_floor BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL,
        token_hash {blob} UNIQUE,
        created_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX devices_account ON devices(account_id);
    CREATE TABLE nodes (
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        id TEXT NOT NULL,
        parent_id TEXT,
        name {blob},
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        rev BIGINT NOT NULL,
        version INTEGER,
        trash_root TEXT,
        trashed_at BIGINT,
        PRIMARY KEY (account_id, id)
    );
    CREATE UNIQUE INDEX nodes_live_name ON nodes(account_id, parent_id, name)
        WHERE state = 'live';
    CREATE INDEX nodes_rev ON nodes(account_id, rev);
    CREATE INDEX nodes_parent ON nodes(account_id, parent_id);
    CREATE TABLE versions (
        account_id BIGINT NOT NULL,
        node_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        manifest TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        device_id TEXT,
        PRIMARY KEY (account_id, node_id, number)
    );
    CREATE TABLE chunks (
        account_id BIGINT NOT NULL,
        id TEXT NOT NULL,
        size BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (account_id, id)
    );
    """,
    # Backups: each snapshot is an encrypted document (held in chunks, `document` is its
    # manifest) plus the plain ids of every chunk it references, which GC keeps.
    """
    CREATE TABLE snapshots (
        account_id BIGINT NOT NULL,
        id TEXT NOT NULL,
        backup_id TEXT NOT NULL,
        device_id TEXT,
        taken_at_ns BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        size BIGINT NOT NULL,
        files BIGINT NOT NULL,
        document TEXT NOT NULL,
        chunks TEXT NOT NULL,
        PRIMARY KEY (account_id, id)
    );
    CREATE INDEX snapshots_backup ON snapshots(account_id, backup_id, taken_at_ns);
    """,
    # Packs: a chunk uploaded from now on lives at (pack, pack_offset, size) inside a pack blob
    # of many chunks. Chunks recorded before keep NULL: a blob of their own under their id.
    # `packs.size` is the blob's length, so GC can tell how much of it is still live.
    """
    ALTER TABLE chunks ADD COLUMN pack TEXT;
    ALTER TABLE chunks ADD COLUMN pack_offset BIGINT;
    CREATE INDEX chunks_pack ON chunks(account_id, pack);
    CREATE TABLE packs (
        account_id BIGINT NOT NULL,
        id TEXT NOT NULL,
        size BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (account_id, id)
    );
    """,
    # Backup labels: each snapshot may carry its backup's source folder, sealed by the client
    # (label key, backup id as associated data), so another device of the account can list
    # and restore the backup. Snapshots from before have none (their document names it).
    """
    ALTER TABLE snapshots ADD COLUMN label {blob};
    """,
]
