"""``fraudstream monitor``: drift and delayed-label recall of the champion model.

Modules, from the edge inwards:

* :mod:`~services.monitor.cli` parses settings and runs the faust worker;
* :mod:`~services.monitor.app` builds the faust app (read_committed, raw topics, JSON
  tables) and :mod:`~services.monitor.agents` wires the two agents to the core;
* :mod:`~services.monitor.records` decodes batches into columns or typed rejections;
* :mod:`~services.monitor.core` holds the logic (no faust imports), persisting through
  :mod:`~services.monitor.drift_state` and :mod:`~services.monitor.recall_state` into
  two key-value tables; the maths is in :mod:`services.core.drift` and
  :mod:`services.core.recall`;
* :mod:`~services.monitor.metrics` exports ``fraudstream_monitor_*``.
"""
