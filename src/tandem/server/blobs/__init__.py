"""The blob store: encrypted chunks by key. One narrow interface; a local folder or an S3 bucket.

Chunks are immutable and at most a few MiB, so the contract is whole-object: `put` is
create-only and durable, `get` returns bytes, `delete` is idempotent (as restic's backends).
"""

from tandem.server.blobs.base import BlobStore
from tandem.server.blobs.open import open_blob_store

__all__ = ["BlobStore", "open_blob_store"]
