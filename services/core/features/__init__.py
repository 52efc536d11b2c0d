"""One feature path for training and serving.

``compute(card_state, merchant_view, txn) -> (vector, new_card_state, merchant_delta)``
is pure and driven by event time only. :mod:`services.core.offline` replays history
through it with state in memory (training, backtest); :mod:`services.online.store` runs it
with state in Redis (scorer). ``tests/integration/test_feature_parity.py`` feeds one stream
through both and demands bit-identical vectors and states.

Modules: :mod:`.schema` (names, parameters, fingerprint, readable names), :mod:`.card`
(per-card state), :mod:`.merchant` (per-merchant integer buckets), :mod:`.calc` (the
function), :mod:`.vector` (vector bytes and named views).
"""

from services.core.features.calc import NAN, Vector, card_features, compute, merchant_features
from services.core.features.card import CardState, StateFormatError
from services.core.features.merchant import (
    MerchantDelta,
    MerchantState,
    MerchantView,
    MerchantWindow,
)
from services.core.features.schema import (
    CARD_WINDOW_CAP,
    DAY_MS,
    DRIFT_EXEMPT,
    FEATURE_INDEX,
    FEATURE_LOGIC_VERSION,
    FEATURE_NAMES,
    FEATURE_SET_FINGERPRINT,
    HOUR_MS,
    MCC_RISK_GROUP,
    MERCHANT_DAILY_KEEP_D,
    MERCHANT_HOURLY_KEEP_H,
    N_CARD_FEATURES,
    N_FEATURES,
    N_MERCHANT_FEATURES,
    READABLE,
    SEEN_CAP,
)
from services.core.features.vector import VECTOR_STRUCT, named, pack_vector, unpack_vector

__all__ = [
    "CARD_WINDOW_CAP",
    "DAY_MS",
    "DRIFT_EXEMPT",
    "FEATURE_INDEX",
    "FEATURE_LOGIC_VERSION",
    "FEATURE_NAMES",
    "FEATURE_SET_FINGERPRINT",
    "HOUR_MS",
    "MCC_RISK_GROUP",
    "MERCHANT_DAILY_KEEP_D",
    "MERCHANT_HOURLY_KEEP_H",
    "N_CARD_FEATURES",
    "N_FEATURES",
    "N_MERCHANT_FEATURES",
    "NAN",
    "READABLE",
    "SEEN_CAP",
    "VECTOR_STRUCT",
    "CardState",
    "MerchantDelta",
    "MerchantState",
    "MerchantView",
    "MerchantWindow",
    "StateFormatError",
    "Vector",
    "card_features",
    "compute",
    "merchant_features",
    "named",
    "pack_vector",
    "unpack_vector",
]
