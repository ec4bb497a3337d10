"""Tests of the enricher service."""
