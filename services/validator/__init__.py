"""The validator: checks records against the versioned spec, marks anomalies, applies
business filters, and keeps every rejected or filtered record in the error bucket."""
