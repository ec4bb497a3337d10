"""Tests of the validator service."""
