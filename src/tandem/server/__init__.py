"""The cloud: an HTTP API over a metadata store and a blob store. Sees only ciphertext."""
