"""The scorer service: transactions in, one score per transaction out, exactly once.

Modules: :mod:`.cli` (``fraudstream scorer``), :mod:`.loop` (consume, score, deliver),
:mod:`.batch` (one micro-batch: decode, validate, predict, encode; pure),
:mod:`.delivery` (Kafka transactions or at-least-once), :mod:`.dlq` (dead-letter
headers, poison-flood detector), :mod:`.model_watch` (champion hot swap, shadow hook),
:mod:`.metrics` (Prometheus).
"""
