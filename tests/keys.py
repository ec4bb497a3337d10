"""Batch object keys as tests name them: with the content digest taken off.

A batch object is ``<kind>/<partition>/<batch segment>_<16 hex of content>.jsonl[.gz]``
(the digest keeps two different batches that share an id apart); tests that name the
objects they expect by batch id compare keys with the digest removed, after checking
it is there.
"""

from __future__ import annotations

import re

_DIGEST = re.compile(r"_[0-9a-f]{16}(?=\.jsonl(\.gz)?$)")


def by_batch(key: str) -> str:
    """``key`` without its content digest; AssertionError if it has none."""
    stripped, count = _DIGEST.subn("", key)
    assert count == 1, f"{key}: no content digest before the extension"
    return stripped
