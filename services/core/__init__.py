"""Pure domain logic. Nothing in this package may import Kafka or Redis clients.

A unit test enforces that, so the offline trainer, the backtest and the online
scorer can all share it.
"""
