"""``fraudstream demo``: the whole system end to end on a local stack, in one command.

:mod:`.cli` (settings), :mod:`.pipeline` (the run and its cleanup), :mod:`.steps` (stack,
data, champion, backtest, comparison), :mod:`.services` (child processes, metrics),
:mod:`.kafka_io` (topics, reading outputs), :mod:`.progress` (the live status line).
"""
