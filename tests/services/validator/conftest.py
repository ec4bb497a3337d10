"""Fixtures of this directory: the in-memory AWS shared with the other stateless stage."""

from tests.services.validator.stack import moto_stack

__all__ = ["moto_stack"]
