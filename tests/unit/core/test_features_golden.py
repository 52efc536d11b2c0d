"""Golden vectors: compute() must not change behaviour without a new logic version.

If this fails after an intended change, bump FEATURE_LOGIC_VERSION (schema.py), update
the fingerprint pin in test_features.py and the digest below. If the change was not
intended, it is a training/serving skew waiting to happen: models trained before it would
be served different features.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

import numpy as np

from services.core.features import FEATURE_INDEX, FEATURE_LOGIC_VERSION
from services.core.offline import build_features

T0 = 1_714_521_600_000
MIN = 60_000
DAY = 86_400_000

GOLDEN = {1: "8cfe117835aa33f7"}  # FEATURE_LOGIC_VERSION -> digest of the stream below


def stream(seed: int = 1, n: int = 2500) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        card = f"c{rng.randrange(60)}"
        late = rng.choice([0] * 30 + [5 * MIN, 3 * 3_600_000, 3 * DAY, 8 * DAY])
        out.append(
            {
                "txn_id": f"t{i}",
                "card_id": card,
                "merchant_id": f"m{rng.randrange(15)}",
                "mcc": rng.choice([5411, 7995, 5732, 3001]),
                "amount": round(rng.lognormvariate(3.0, 1.2), 2),
                "currency": "EUR",
                "country": rng.choice(["DE", "DE", "DE", "FR", "US"]),
                "channel": rng.choice(["POS", "ECOM", "ATM", "MOTO", "UNKNOWN"]),
                "device_id": rng.choice([None, f"d-{card}", "d-shared"]),
                "event_time": T0 + i * 7 * MIN - late,
            }
        )
        if rng.random() < 0.02:
            out.append(dict(out[rng.randrange(len(out))]))
    return out


def test_vectors_of_a_seeded_stream_are_unchanged() -> None:
    X = build_features(stream()).X.copy()
    log_col = FEATURE_INDEX["log_amount"]
    amount = X[:, FEATURE_INDEX["amount"]]
    # log1p comes from the platform's libm, which may differ in the last bit: checked
    # separately, and left out of the digest.
    assert all(
        math.isclose(v, math.log1p(a), rel_tol=1e-15) for v, a in zip(X[:, log_col], amount, strict=True)
    )
    X[:, log_col] = 0.0
    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()[:16]
    assert digest == GOLDEN.get(FEATURE_LOGIC_VERSION), digest
