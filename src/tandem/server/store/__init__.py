"""The metadata store: accounts, devices, the tree, its journal, history and chunk records.

One narrow interface (`MetadataStore` in `base`), one SQL implementation of the rules
(`sql.SqlStore`) and one connection layer per engine (`sqlite`). Chosen by URL in `open_store`.
"""

from tandem.server.store.base import MetadataStore, StoreError
from tandem.server.store.open import open_store

__all__ = ["MetadataStore", "StoreError", "open_store"]
