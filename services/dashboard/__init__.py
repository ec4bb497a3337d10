"""The web dashboard: scenario and history, queues, throughput and lag, rejected records,
notifications, and a tab of windowed data. Read-only."""
