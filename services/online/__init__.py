"""The online feature store: the pure feature function with its state in Redis.

:mod:`.keys` is the key layout (pure); :mod:`.scripts` holds the Lua write scripts;
:mod:`.store` runs the batch protocol.
"""

from services.online.store import ConflictError, OnlineFeatureStore, StoreError, StoreUnavailable

__all__ = ["ConflictError", "OnlineFeatureStore", "StoreError", "StoreUnavailable"]
