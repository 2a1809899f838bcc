"""Offline evaluation of a replay: KPIs against the always-frontier-under-policy reference, README baselines.

Reads score and label files, which routing never does. Definitions: ``docs/report.md``.
"""
