"""Fraud patterns. Each returns the fraudulent transactions it injects as :class:`Txns`.

Every pattern leaves traces that per-card history features can pick up, yet none is
given away by one field alone (legit spend also has small tickets, new devices, trips
abroad, night owls and gamblers):

card_testing          bursts of 3-12 tiny payments minutes apart at popular risky
                      online merchants new to the card, on a fraud-ring device; half the
                      time followed by 1-2 large cash-out purchases.
ato                   account takeover: a new device, then 3-8 payments of 2.5-8x the
                      card's typical ticket within hours, at electronics, airlines,
                      money transfer, gambling.
compromised_merchant  a card-present merchant is skimmed for some days; a share of the
                      cards seen there are cloned and used days later elsewhere:
                      abroad at shops and ATMs or online, for 2-6x the usual amount.
opportunistic         single odd payments: odd hours, risky MCCs, 1.5-5x the usual.
low_and_slow          (drift scenario ``new_pattern`` only) one payment every day or
                      two at normal amounts in high-risk online MCCs, often from the
                      card's own device: hard for features tuned to bursts.

Fraud lands from day 2 on (or later in tiny data sets) so victims have some history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.generator import catalog as cat
from services.generator.frame import NO_DEVICE, Txns, pattern_code
from services.generator.legit import DeviceCounter, local_time_of_day_ms
from services.generator.world import Pool, Population

TESTING_MCCS = (5967, 5999, 4829, 7995, 4814)
CASHOUT_MCCS = (5732, 5999, 4511)
ATO_MCCS = (5732, 4829, 7995, 4511, 5311, 5691)
SKIMMED_MCCS = (5812, 5541, 5411, 5311, 7011, 5814)
COUNTERFEIT_MCCS = (5732, 5311, 5999, 6011, 5691)
OPPORTUNISTIC_MCCS = (7995, 4829, 5967, 5732, 5999, 4511, 6011)
SLOW_MCCS = (5967, 4829, 7995, 4814, 5999)
ATM_CATEGORY = cat.category_index(6011)
MAX_CLONED_PER_MERCHANT = 40


@dataclass
class FraudContext:
    pop: Population
    start_ms: int
    end_ms: int
    devices: DeviceCounter
    ring_devices: np.ndarray  # fraud-ring devices, shared across episodes
    next_episode: int = 0
    pools: dict[tuple[tuple[int, ...], tuple[int, ...]], Pool] = field(default_factory=dict)

    @property
    def first_fraud_ms(self) -> int:
        days = (self.end_ms - self.start_ms) // cat.DAY_MS
        return self.start_ms + min(2, days // 3) * cat.DAY_MS

    def pool(self, mccs: tuple[int, ...], channels: tuple[int, ...]) -> Pool:
        key = (mccs, channels)
        if key not in self.pools:
            self.pools[key] = self.pop.pool(mccs, channels)
        return self.pools[key]

    def episodes(self, n: int) -> np.ndarray:
        out = np.arange(self.next_episode, self.next_episode + n, dtype=np.int32)
        self.next_episode += n
        return out

    def ring_device(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.asarray(self.ring_devices[rng.integers(0, self.ring_devices.size, n)])


def cumsum_within(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` restarted at each group of ``counts`` consecutive items."""
    total = np.cumsum(values)
    group_start = np.repeat(np.cumsum(counts) - counts, counts)
    before = np.concatenate([[0], total])[group_start]
    return np.asarray(total - before)


def _group_firsts(counts: np.ndarray) -> np.ndarray:
    """Position of each non-empty group's first item in the flattened groups."""
    return np.asarray((np.cumsum(counts) - counts)[counts > 0])


def _burst_times(
    rng: np.random.Generator, starts: np.ndarray, counts: np.ndarray, mean_gap_ms: float
) -> np.ndarray:
    """Times of ``counts[i]`` events from ``starts[i]`` with exponential gaps."""
    gaps = rng.exponential(mean_gap_ms, int(counts.sum()))
    gaps[_group_firsts(counts)] = 0.0  # the first event of an episode is at its start
    return np.asarray(np.repeat(starts, counts) + cumsum_within(gaps, counts).astype(np.int64))


def _uniform_starts(ctx: FraudContext, rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(ctx.first_fraud_ms, ctx.end_ms, n, dtype=np.int64)


def _fraud_amounts(
    ctx: FraudContext,
    card: np.ndarray,
    merchant: np.ndarray,
    low: float,
    high: float,
    rng: np.random.Generator,
) -> np.ndarray:
    category = ctx.pop.merchant_category[merchant]
    amount = ctx.pop.typical_amount_eur(card, category) * rng.uniform(low, high, card.shape[0])
    # cash machines pay out round sums, whatever the card usually withdraws
    atm = category == ATM_CATEGORY
    amount[atm] = rng.choice([200.0, 250.0, 300.0, 400.0, 500.0], int(atm.sum()))
    return np.asarray(amount)


def _ecom_device(ctx: FraudContext, merchant: np.ndarray, device: np.ndarray) -> np.ndarray:
    ecom = ctx.pop.merchant_channel[merchant] == cat.ECOM
    return np.asarray(np.where(ecom, device, NO_DEVICE), dtype=np.int32)


def _finish(ctx: FraudContext, txns: Txns) -> Txns:
    """Drop what falls after the data set's end."""
    return txns.take(np.flatnonzero(txns.time_ms < ctx.end_ms))


def card_testing(ctx: FraudContext, rng: np.random.Generator, target: int) -> Txns:
    n_ep = max(1, round(target / 8.2))
    episode = ctx.episodes(n_ep)
    victim = rng.integers(0, ctx.pop.cards, n_ep).astype(np.int32)
    burst = rng.integers(3, 13, n_ep)
    testers = ctx.pool(TESTING_MCCS, (cat.ECOM,)).sample(rng, n_ep * 3).reshape(n_ep, 3)
    n_testers = rng.integers(1, 4, n_ep)
    ring = ctx.ring_device(rng, n_ep)
    start = _uniform_starts(ctx, rng, n_ep)
    times = _burst_times(rng, start, burst, 3 * cat.MINUTE_MS)
    ep = np.repeat(np.arange(n_ep), burst)
    merchant = testers[ep, rng.integers(0, 3, ep.size) % n_testers[ep]]
    # tiny amounts, often round, in the merchant's own currency
    fx = cat.COUNTRY_FX[ctx.pop.merchant_country[merchant]]
    local = np.where(
        rng.random(ep.size) < 0.4,
        rng.choice([1.0, 2.0, 5.0], ep.size),
        np.round(rng.uniform(0.5, 5.0, ep.size), 2),
    )
    tests = Txns.build(
        victim[ep],
        merchant,
        times,
        local / fx,
        _ecom_device(ctx, merchant, ring[ep]),
        pattern_code("card_testing"),
        episode[ep],
    )
    cash = rng.random(n_ep) < 0.5
    n_cash = np.where(cash, rng.integers(1, 3, n_ep), 0)
    burst_end = np.maximum.reduceat(times, _group_firsts(burst))
    cash_start = burst_end + rng.integers(10 * cat.MINUTE_MS, 4 * cat.HOUR_MS, n_ep)
    cash_times = _burst_times(rng, cash_start, n_cash, 20 * cat.MINUTE_MS)
    ce = np.repeat(np.arange(n_ep), n_cash)
    cash_merchant = ctx.pool(CASHOUT_MCCS, (cat.ECOM,)).sample(rng, ce.size)
    cashout = Txns.build(
        victim[ce],
        cash_merchant,
        cash_times,
        _fraud_amounts(ctx, victim[ce], cash_merchant, 3.0, 8.0, rng),
        _ecom_device(ctx, cash_merchant, ring[ce]),
        pattern_code("card_testing"),
        episode[ce],
    )
    return _finish(ctx, Txns.concat([tests, cashout]))


def ato(ctx: FraudContext, rng: np.random.Generator, target: int) -> Txns:
    n_ep = max(1, round(target / 5.5))
    episode = ctx.episodes(n_ep)
    victim = rng.integers(0, ctx.pop.cards, n_ep).astype(np.int32)
    count = rng.integers(3, 9, n_ep)
    device = np.where(rng.random(n_ep) < 0.7, ctx.ring_device(rng, n_ep), ctx.devices.new(n_ep))
    times = _burst_times(rng, _uniform_starts(ctx, rng, n_ep), count, 25 * cat.MINUTE_MS)
    ep = np.repeat(np.arange(n_ep), count)
    merchant = ctx.pool(ATO_MCCS, (cat.ECOM,)).sample(rng, ep.size)
    amount = _fraud_amounts(ctx, victim[ep], merchant, 2.5, 8.0, rng)
    return _finish(
        ctx,
        Txns.build(
            victim[ep],
            merchant,
            times,
            amount,
            _ecom_device(ctx, merchant, device[ep]),
            pattern_code("ato"),
            episode[ep],
        ),
    )


def compromised_merchant(ctx: FraudContext, rng: np.random.Generator, target: int, legit: Txns) -> Txns:
    """Skim card-present merchants until about ``target`` fraud payments follow."""
    skimmable = ctx.pool(SKIMMED_MCCS, (cat.POS,))
    order = np.argsort(legit.merchant, kind="stable")
    by_merchant = legit.merchant[order]
    days = (ctx.end_ms - ctx.start_ms) // cat.DAY_MS
    latest_window = ctx.start_ms + max(1, days - 7) * cat.DAY_MS
    parts: list[Txns] = []
    produced = 0
    for _ in range(10_000):
        if produced >= target:
            break
        merchant = int(skimmable.sample(rng, 1)[0])
        lo, hi = np.searchsorted(by_merchant, [merchant, merchant + 1])
        seen = order[lo:hi]
        w_start = int(rng.integers(ctx.start_ms, latest_window))
        w_end = w_start + int(rng.integers(2, 8)) * cat.DAY_MS
        seen = seen[(legit.time_ms[seen] >= w_start) & (legit.time_ms[seen] < w_end)]
        if seen.size == 0:
            continue
        seen = seen[np.argsort(legit.time_ms[seen], kind="stable")]  # first visit first
        cards, first = np.unique(legit.card[seen], return_index=True)
        # a skimmer catches some of the cards; fraudsters sell on a batch of them
        cloned = np.flatnonzero(rng.random(cards.size) < rng.uniform(0.4, 0.9))
        cloned = rng.permutation(cloned)[:MAX_CLONED_PER_MERCHANT]
        cloned.sort()
        part = _cloned_card_spend(ctx, rng, cards[cloned], legit.time_ms[seen][first][cloned])
        parts.append(part)
        produced += len(part)
    return Txns.concat(parts) if parts else Txns.empty()


def _cloned_card_spend(
    ctx: FraudContext, rng: np.random.Generator, cards: np.ndarray, skimmed_at: np.ndarray
) -> Txns:
    n_ep = cards.size
    episode = ctx.episodes(n_ep)
    onset = skimmed_at + (rng.lognormal(np.log(6.0), 0.6, n_ep) * cat.DAY_MS).astype(np.int64)
    count = rng.integers(1, 5, n_ep)
    times = _burst_times(rng, onset, count, 3 * cat.HOUR_MS)
    ep = np.repeat(np.arange(n_ep), count)
    abroad = np.repeat(rng.random(n_ep) < 0.55, count)
    present = ctx.pool(COUNTERFEIT_MCCS, (cat.POS, cat.ATM))
    foreign = np.isin(ctx.pop.merchant_country[present.merchants], cat.FRAUD_DESTINATIONS)
    if foreign.any():
        present = Pool.of(present.merchants[foreign], ctx.pop.merchant_weight)
    merchant = np.where(
        abroad,
        present.sample(rng, ep.size),
        ctx.pool(CASHOUT_MCCS + (4829,), (cat.ECOM,)).sample(rng, ep.size),
    )
    amount = _fraud_amounts(ctx, cards[ep], merchant, 2.0, 6.0, rng)
    device = _ecom_device(ctx, merchant, ctx.ring_device(rng, n_ep)[ep])
    txns = Txns.build(
        cards[ep],
        merchant,
        times,
        amount,
        device,
        pattern_code("compromised_merchant"),
        episode[ep],
    )
    return _finish(ctx, txns)


def opportunistic(ctx: FraudContext, rng: np.random.Generator, target: int) -> Txns:
    n = max(1, target)
    episode = ctx.episodes(n)
    card = rng.integers(0, ctx.pop.cards, n).astype(np.int32)
    first_day = (ctx.first_fraud_ms - ctx.start_ms) // cat.DAY_MS
    days = (ctx.end_ms - ctx.start_ms) // cat.DAY_MS
    day = rng.integers(first_day, days, n).astype(np.int64)
    odd = rng.random(n) < 0.55
    local_ms = np.where(
        odd,
        (rng.uniform(0.0, 5.5, n) * cat.HOUR_MS).astype(np.int64),
        local_time_of_day_ms(ctx.pop, card, rng),
    )
    times = ctx.start_ms + day * cat.DAY_MS + local_ms
    times -= cat.COUNTRY_OFFSET_MS[ctx.pop.card_country[card]]
    merchant = ctx.pool(OPPORTUNISTIC_MCCS, (cat.POS, cat.ECOM, cat.ATM, cat.MOTO)).sample(rng, n)
    own = ctx.pop.card_device_first[card]
    device = np.where(rng.random(n) < 0.65, ctx.ring_device(rng, n), own)
    txns = Txns.build(
        card,
        merchant,
        times,
        _fraud_amounts(ctx, card, merchant, 1.5, 5.0, rng),
        _ecom_device(ctx, merchant, device),
        pattern_code("opportunistic"),
        episode,
    )
    return txns.take(np.flatnonzero((times >= ctx.start_ms) & (times < ctx.end_ms)))


def low_and_slow(ctx: FraudContext, rng: np.random.Generator, target: int, onset_ms: int) -> Txns:
    n_ep = max(1, round(target / 5.5))
    episode = ctx.episodes(n_ep)
    victim = rng.integers(0, ctx.pop.cards, n_ep).astype(np.int32)
    count = rng.integers(3, 9, n_ep)
    start = rng.integers(onset_ms, ctx.end_ms, n_ep, dtype=np.int64)
    gaps = rng.uniform(16 * cat.HOUR_MS, 60 * cat.HOUR_MS, int(count.sum()))
    gaps[_group_firsts(count)] = 0.0
    times = np.repeat(start, count) + cumsum_within(gaps, count).astype(np.int64)
    ep = np.repeat(np.arange(n_ep), count)
    merchant = ctx.pool(SLOW_MCCS, (cat.ECOM,)).sample(rng, ep.size)
    # a normal-looking ticket for this card, not for the (unusual) category
    amount = ctx.pop.card_scale[victim[ep]] * 35.0 * rng.uniform(0.6, 1.4, ep.size)
    own = ctx.pop.card_device_first[victim]
    device = np.where(rng.random(n_ep) < 0.7, own, ctx.devices.new(n_ep))
    txns = Txns.build(
        victim[ep],
        merchant,
        times,
        amount,
        _ecom_device(ctx, merchant, device[ep]),
        pattern_code("low_and_slow"),
        episode[ep],
    )
    return _finish(ctx, txns)
