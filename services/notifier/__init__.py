"""The anomaly notifier: one notification per burst of anomalies at a location.

See docs/NOTIFICATIONS.md for the burst definition and the delivery guarantees.
"""
