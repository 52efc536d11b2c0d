"""The online feature store: the pure feature function with its state in Redis.

:mod:`.keys` is the key layout (pure); :mod:`.reads` builds and parses the read step
(pure); :mod:`.scripts` holds the Lua write scripts; :mod:`.wire` sends pipelined
commands on one connection; :mod:`.store` runs the batch protocol.
"""

from services.online.store import ConflictError, OnlineFeatureStore, StoreError, StoreUnavailable

__all__ = ["ConflictError", "OnlineFeatureStore", "StoreError", "StoreUnavailable"]
