"""Turn a generated :class:`World` into the data-set directory (see services.dataset).

Ids are minted here: ``txn_id`` is ``t_<tag>_<counter>`` with a tag derived from the
whole configuration (two different data sets never share transaction ids, yet the same
configuration reproduces them), ``card_id`` is ``card_<16 hex>``, ``merchant_id`` is
``m_<n>`` and ``device_id`` is ``d_<16 hex>``. Amounts are converted from EUR into the
merchant country's currency; ATMs pay out round sums.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from services import dataset
from services.generator import catalog as cat
from services.generator.build import World, stream
from services.generator.config import GENERATOR_VERSION, GeneratorConfig
from services.generator.frame import PATTERN_NAMES
from services.generator.labels import SOURCES, policy
from services.generator.world import mint_tokens


def txn_id_tag(config: GeneratorConfig) -> str:
    blob = json.dumps(asdict(config), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


def local_amounts(world: World) -> np.ndarray:
    """Amounts in the merchant's currency, rounded like real tickets."""
    pop, txns = world.population, world.txns
    country = pop.merchant_country[txns.merchant]
    fx = cat.COUNTRY_FX[country]
    amount = np.round(txns.amount_eur * fx, 2)
    atm = pop.merchant_channel[txns.merchant] == cat.ATM
    step = 10.0 ** np.maximum(1, np.floor(np.log10(fx)) + 1)
    amount[atm] = np.maximum(np.round(amount[atm] / step[atm]), 1) * step[atm]
    return np.asarray(np.maximum(amount, 0.01))


class Columns:
    """The world's transactions as Python lists, ready for Avro records."""

    def __init__(self, world: World) -> None:
        pop, txns, config = world.population, world.txns, world.config
        tokens = stream(config.seed, "tokens")
        card_tokens = np.array(mint_tokens(tokens, pop.cards, "card_"), dtype=object)
        # index -1 (no device) picks the trailing None
        device_tokens = np.array([*mint_tokens(tokens, world.devices, "d_"), None], dtype=object)
        merchant_ids = np.array([f"m_{i}" for i in range(pop.merchants)], dtype=object)
        country = pop.merchant_country[txns.merchant]
        tag = txn_id_tag(config)
        self.txn_id = [f"t_{tag}_{i:010d}" for i in range(len(txns))]
        self.card_id: list[str] = card_tokens[txns.card].tolist()
        self.merchant_id: list[str] = merchant_ids[txns.merchant].tolist()
        self.mcc: list[int] = pop.merchant_mcc(txns.merchant).tolist()
        self.amount: list[float] = local_amounts(world).tolist()
        self.currency: list[str] = np.array(cat.CURRENCIES, dtype=object)[country].tolist()
        self.country: list[str] = np.array(cat.COUNTRY_CODES, dtype=object)[country].tolist()
        self.channel: list[str] = np.array(cat.CHANNELS, dtype=object)[
            pop.merchant_channel[txns.merchant]
        ].tolist()
        self.device_id: list[str | None] = device_tokens[txns.device].tolist()
        self.event_time: list[int] = txns.time_ms.tolist()
        self.is_fraud: list[bool] = txns.is_fraud.tolist()
        self.pattern: list[str] = np.array(PATTERN_NAMES, dtype=object)[txns.pattern].tolist()


def transaction_records(c: Columns) -> Iterator[dict[str, Any]]:
    for txn_id, card, merchant, mcc, amount, currency, country, channel, device, t in zip(
        c.txn_id,
        c.card_id,
        c.merchant_id,
        c.mcc,
        c.amount,
        c.currency,
        c.country,
        c.channel,
        c.device_id,
        c.event_time,
        strict=True,
    ):
        yield {
            "txn_id": txn_id,
            "card_id": card,
            "merchant_id": merchant,
            "mcc": mcc,
            "amount": amount,
            "currency": currency,
            "country": country,
            "channel": channel,
            "device_id": device,
            "event_time": t,
        }


def truth_records(c: Columns) -> Iterator[dict[str, Any]]:
    for txn_id, is_fraud, pattern in zip(c.txn_id, c.is_fraud, c.pattern, strict=True):
        yield {"txn_id": txn_id, "is_fraud": is_fraud, "pattern": pattern}


def label_records(world: World, c: Columns) -> Iterator[dict[str, Any]]:
    lab = world.labels
    for i, is_fraud, t, source in zip(
        lab.txn.tolist(),
        lab.is_fraud.tolist(),
        lab.label_time.tolist(),
        lab.source.tolist(),
        strict=True,
    ):
        yield {
            "txn_id": c.txn_id[i],
            "card_id": c.card_id[i],
            "is_fraud": is_fraud,
            "label_time": t,
            "source": SOURCES[source],
        }


PROGRESS_CHUNK = 1 << 14


def _bar(records: Iterator[dict[str, Any]], total: int, desc: str, show: bool) -> Iterator[Any]:
    """``records`` with a tqdm bar on stderr (auto-off when stderr is not a terminal)."""
    return _counted(records, total, desc) if show else records


def _counted(records: Iterator[dict[str, Any]], total: int, desc: str) -> Iterator[Any]:
    # update in chunks: a per-record tqdm step would cost more than the Avro encoding
    with tqdm(total=total, desc=desc, unit=" rec", disable=None, leave=False) as bar:
        for i, record in enumerate(records, 1):
            yield record
            if i % PROGRESS_CHUNK == 0:
                bar.update(PROGRESS_CHUNK)
        bar.update(total - bar.n)


def write_dataset(directory: Path, world: World, *, progress: bool = False) -> dict[str, Any]:
    """Write the four files of the data set into ``directory``; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    seed = world.config.seed
    columns = Columns(world)
    n, k = len(world.txns), len(world.labels)
    dataset.write_transactions(
        directory, _bar(transaction_records(columns), n, "transactions", progress), seed=seed
    )
    dataset.write_labels(directory, _bar(label_records(world, columns), k, "labels", progress), seed=seed)
    dataset.write_truth(directory, _bar(truth_records(columns), n, "truth", progress), seed=seed)
    manifest = build_manifest(world, columns)
    dataset.write_manifest(directory, manifest)
    return dataset.read_manifest(directory)


def build_manifest(world: World, columns: Columns) -> dict[str, Any]:
    config, txns, labels = world.config, world.txns, world.labels
    fraud = int(txns.is_fraud.sum())
    by_pattern = np.bincount(txns.pattern, minlength=len(PATTERN_NAMES))
    by_source = np.bincount(labels.source, minlength=len(SOURCES))
    return {
        "generator": {"name": "fraudstream generate", "version": GENERATOR_VERSION},
        "seed": config.seed,
        "days": config.days,
        "start": _iso_day(config.start_ms),
        "start_ms": config.start_ms,
        "end_ms": config.end_ms,
        "cards": config.cards,
        "merchants": config.merchants,
        "fraud_rate_target": config.fraud_rate,
        "fraud_rate": round(fraud / max(1, len(txns)), 6),
        "patterns": list(config.patterns),
        "drift": list(world.drift),
        "txn_id_prefix": f"t_{txn_id_tag(config)}_",
        "counts": {
            "transactions": len(txns),
            "fraud_transactions": fraud,
            "fraud_by_pattern": {
                name: int(by_pattern[i]) for i, name in enumerate(PATTERN_NAMES) if i and by_pattern[i]
            },
            "labels": len(labels),
            "labels_by_source": {s: int(by_source[i]) for i, s in enumerate(SOURCES)},
            "labels_after_end": int(np.count_nonzero(labels.label_time >= config.end_ms)),
            "cards_seen": len(set(columns.card_id)),
            "devices": world.devices,
        },
        "label_policy": policy(),
    }


def _iso_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()
