"""The enricher: stamps lineage on every record of batches whose scenario asks for it."""
