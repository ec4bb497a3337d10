"""Tests of the pipeline services."""
