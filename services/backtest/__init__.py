"""``fraudstream backtest``: a data set through the live services' code, offline.

Modules: :mod:`.cli` (flags, settings), :mod:`.data` (the data set as columns, feature
cache), :mod:`.engine` (scoring, decisions, scenarios), :mod:`.monitor_pass` (the
monitor's own core fed from a file: PSI windows, recall cohorts, retrain decisions),
:mod:`.figures` (JSON-ready figures), :mod:`.report` (HTML) and :mod:`.svg` (charts).
"""
