"""The router: writes each validated batch to the destinations its scenario names."""
