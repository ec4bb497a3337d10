"""The windowing aggregator: tumbling event-time windows per sensor, written durably to
the aggregated bucket (see handler.py for the durability design)."""
