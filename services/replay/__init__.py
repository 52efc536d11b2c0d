"""``fraudstream replay``: a data set back onto Kafka in event-time order.

:mod:`~services.replay.cli` parses settings and reads the data set; the merge, slice
and pacing rules are pure (:mod:`services.core.replay_plan`); :mod:`~services.replay.publisher`
is the producer loop.
"""
