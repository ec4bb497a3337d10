"""S3ObjectStore (on moto's S3, whose PutObject honours If-Match / If-None-Match) and
MemoryObjectStore give the same answers: get, exists, put with Expect.ANY,
Expect.ABSENT or an ETag, and StoreConflict when a condition is refused."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sensorpipe.aws import s3_client
from sensorpipe.store import (
    Expect,
    MemoryObjectStore,
    ObjectStore,
    Put,
    S3ObjectStore,
    StoreConflict,
    StoreError,
)
from tests.moto_stack import mocked_aws

BUCKET = "sensorpipe-store-test"

StoreFactory = Callable[[], ObjectStore]


@pytest.fixture
def s3_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3ObjectStore]:
    with mocked_aws(monkeypatch):
        s3 = s3_client()
        s3.create_bucket(Bucket=BUCKET)
        yield S3ObjectStore(s3, BUCKET, service="test")


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    if request.param == "memory":
        return MemoryObjectStore(BUCKET)
    s3: ObjectStore = request.getfixturevalue("s3_store")
    return s3


def md5_etag(body: bytes) -> str:
    """S3's ETag of a single-part, unencrypted object: the quoted MD5 of its bytes."""
    return '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'


# -- reads ---------------------------------------------------------------------------------


def test_an_absent_key_reads_as_none(store: ObjectStore) -> None:
    assert store.get("nothing/here.json") is None
    assert store.exists("nothing/here.json") is False


def test_a_written_object_reads_back_with_its_etag_and_metadata(store: ObjectStore) -> None:
    body = b'{"a": 1}'
    etag = store.put("dir/one.json", body, metadata={"batch-id": "b-1", "record-count": "3"})
    assert etag == md5_etag(body)
    stored = store.get("dir/one.json")
    assert stored is not None
    assert stored.body == body
    assert stored.etag == etag
    assert stored.metadata == {"batch-id": "b-1", "record-count": "3"}
    assert store.exists("dir/one.json") is True
    assert store.exists("dir/one") is False  # no prefix matching
    assert store.get("dir/") is None


def test_a_gzipped_body_reads_back_as_written(store: ObjectStore) -> None:
    raw = b'{"x": "' + b"y" * 1_000 + b'"}\n'
    body = gzip.compress(raw, mtime=0)
    store.put("z.jsonl.gz", body, gzipped=True, content_type="application/x-ndjson")
    stored = store.get("z.jsonl.gz")
    assert stored is not None
    assert stored.body == body
    assert gzip.decompress(stored.body) == raw


def test_uris_name_the_bucket_and_key(store: ObjectStore) -> None:
    assert store.bucket == BUCKET
    assert store.uri("a/b.json").endswith(f"://{BUCKET}/a/b.json")


# -- unconditional writes --------------------------------------------------------------------


def test_expect_any_overwrites_whatever_is_there(store: ObjectStore) -> None:
    first = store.put("k", b"one", expect=Expect.ANY)
    second = store.put("k", b"two")
    assert first != second
    stored = store.get("k")
    assert stored is not None
    assert (stored.body, stored.etag) == (b"two", second)
    # the same bytes again: a new write, the same ETag
    assert store.put("k", b"two") == second


# -- Expect.ABSENT ---------------------------------------------------------------------------


def test_expect_absent_writes_a_new_key(store: ObjectStore) -> None:
    etag = store.put("new", b"first", expect=Expect.ABSENT)
    stored = store.get("new")
    assert stored is not None
    assert (stored.body, stored.etag) == (b"first", etag)


def test_expect_absent_refuses_an_existing_key(store: ObjectStore) -> None:
    etag = store.put("taken", b"first")
    with pytest.raises(StoreConflict) as caught:
        store.put("taken", b"second", expect=Expect.ABSENT)
    assert caught.value.uri == store.uri("taken")
    assert "no object" in str(caught.value)
    stored = store.get("taken")
    assert stored is not None
    assert (stored.body, stored.etag) == (b"first", etag)  # untouched
    # the same bytes are refused too: the condition is about the key, not the content
    with pytest.raises(StoreConflict):
        store.put("taken", b"first", expect=Expect.ABSENT)


def test_first_writer_wins_with_expect_absent(store: ObjectStore) -> None:
    store.put("ledger/burst-1", b"writer-a", expect=Expect.ABSENT)
    with pytest.raises(StoreConflict):
        store.put("ledger/burst-1", b"writer-b", expect=Expect.ABSENT)
    stored = store.get("ledger/burst-1")
    assert stored is not None and stored.body == b"writer-a"


# -- ETag conditions -------------------------------------------------------------------------


def test_the_current_etag_lets_the_write_through(store: ObjectStore) -> None:
    first = store.put("ckpt", b"v1", expect=Expect.ABSENT)
    second = store.put("ckpt", b"v2", expect=first)
    assert second == md5_etag(b"v2")
    third = store.put("ckpt", b"v3", expect=second)
    stored = store.get("ckpt")
    assert stored is not None
    assert (stored.body, stored.etag) == (b"v3", third)


def test_a_stale_etag_is_refused(store: ObjectStore) -> None:
    first = store.put("ckpt", b"v1")
    second = store.put("ckpt", b"v2", expect=first)
    with pytest.raises(StoreConflict) as caught:
        store.put("ckpt", b"v3", expect=first)  # another writer came first
    assert caught.value.uri == store.uri("ckpt")
    assert first in str(caught.value)
    stored = store.get("ckpt")
    assert stored is not None
    assert (stored.body, stored.etag) == (b"v2", second)
    # a re-read gives the ETag that works
    assert store.put("ckpt", b"v3", expect=stored.etag) == md5_etag(b"v3")


def test_a_made_up_etag_is_refused(store: ObjectStore) -> None:
    store.put("ckpt", b"v1")
    with pytest.raises(StoreConflict):
        store.put("ckpt", b"v2", expect='"00000000000000000000000000000000"')
    stored = store.get("ckpt")
    assert stored is not None and stored.body == b"v1"


def test_an_etag_condition_on_a_missing_key_is_a_conflict(store: ObjectStore) -> None:
    """A checkpoint deleted (or never written) under a writer that holds its ETag: the
    key is not as the writer last saw it."""
    etag = md5_etag(b"v1")
    with pytest.raises(StoreConflict):
        store.put("gone", b"v2", expect=etag)
    assert store.exists("gone") is False


def test_two_writers_from_one_read_one_wins(store: ObjectStore) -> None:
    store.put("ckpt", b"base")
    seen = store.get("ckpt")
    assert seen is not None
    store.put("ckpt", b"writer-a", expect=seen.etag)
    with pytest.raises(StoreConflict):
        store.put("ckpt", b"writer-b", expect=seen.etag)
    stored = store.get("ckpt")
    assert stored is not None and stored.body == b"writer-a"


def test_a_conflict_is_a_store_error(store: ObjectStore) -> None:
    store.put("k", b"1")
    with pytest.raises(StoreError):  # callers that retry on StoreError see it too
        store.put("k", b"2", expect=Expect.ABSENT)


# -- many writes -----------------------------------------------------------------------------


def test_put_many_writes_every_object(store: ObjectStore) -> None:
    puts = [Put(f"many/{i}.json", f'{{"i": {i}}}'.encode(), {"i": str(i)}) for i in range(12)]
    store.put("many/3.json", b"old")
    store.put_many(puts)
    for item in puts:
        stored = store.get(item.key)
        assert stored is not None
        assert (stored.body, stored.etag, stored.metadata) == (
            item.body,
            md5_etag(item.body),
            dict(item.metadata),
        )


def test_get_many_reads_every_key_in_order_and_absent_ones_as_none(store: ObjectStore) -> None:
    written = {f"many/{i}.json": f"body {i}".encode() for i in range(10) if i % 3}
    for key, body in written.items():
        store.put(key, body, metadata={"k": key})
    asked = [f"many/{i}.json" for i in reversed(range(10))] + ["many/none.json"]
    got = store.get_many(asked)
    assert len(got) == len(asked)
    for key, stored in zip(asked, got, strict=True):
        if key not in written:
            assert stored is None
        else:
            assert stored is not None
            body = written[key]
            assert (stored.body, stored.etag, stored.metadata) == (body, md5_etag(body), {"k": key})
    assert store.get_many([]) == []


def test_keys_lists_a_prefix_sorted(store: ObjectStore) -> None:
    for key in ("p/b/2", "p/a=1/x", "p/b/1", "q/p/1", "p"):
        store.put(key, b"")
    assert store.keys("p/") == sorted(["p/a=1/x", "p/b/1", "p/b/2"])
    assert store.keys("p/b/") == ["p/b/1", "p/b/2"]
    assert store.keys("none/") == []


# -- the same answers ----------------------------------------------------------------------


def transcript(store: ObjectStore) -> list[Any]:
    """A fixed script of reads and conditional writes, and what the store answered."""
    answers: list[Any] = []

    def put(key: str, body: bytes, expect: Expect | str) -> str | None:
        try:
            etag = store.put(key, body, expect=expect)
        except StoreConflict:
            answers.append(("conflict", key))
            return None
        answers.append(("put", key, etag))
        return etag

    def read(key: str) -> None:
        stored = store.get(key)
        answers.append(
            ("get", key, None if stored is None else (stored.body, stored.etag, stored.metadata))
        )
        answers.append(("exists", key, store.exists(key)))

    read("a")
    e1 = put("a", b"1", Expect.ABSENT)
    put("a", b"1", Expect.ABSENT)
    read("a")
    e2 = put("a", b"2", e1 or "")
    put("a", b"3", e1 or "")
    put("a", b"3", e2 or "")
    put("b", b"x", e2 or "")
    put("b", b"x", Expect.ANY)
    put("b", b"y", Expect.ANY)
    read("a")
    read("b")
    read("c")
    return answers


def test_memory_and_s3_answer_a_script_alike(s3_store: S3ObjectStore) -> None:
    memory = transcript(MemoryObjectStore(BUCKET))
    assert transcript(s3_store) == memory
    # and the script's answers are what the conditions mean
    kinds = [a[0] if a[0] != "put" else "put" for a in memory]
    assert kinds == [
        "get",
        "exists",
        "put",  # a absent: written
        "conflict",  # a exists
        "get",
        "exists",
        "put",  # a at e1: written
        "conflict",  # e1 is stale
        "put",  # a at e2: written
        "conflict",  # b does not exist: no ETag can match
        "put",
        "put",
        "get",
        "exists",
        "get",
        "exists",
        "get",
        "exists",
    ]
    assert memory[-6:] == [
        ("get", "a", (b"3", md5_etag(b"3"), {})),
        ("exists", "a", True),
        ("get", "b", (b"y", md5_etag(b"y"), {})),
        ("exists", "b", True),
        ("get", "c", None),
        ("exists", "c", False),
    ]


# -- S3 failures -----------------------------------------------------------------------------


def test_s3_failures_other_than_conditions_are_store_errors(s3_store: S3ObjectStore) -> None:
    missing = S3ObjectStore(s3_client(), "no-such-bucket-here", service="test")
    with pytest.raises(StoreError) as read:
        missing.get("k")
    assert not isinstance(read.value, StoreConflict)
    with pytest.raises(StoreError) as write:
        missing.put("k", b"1", expect=Expect.ABSENT)
    assert not isinstance(write.value, StoreConflict)
    with pytest.raises(StoreError) as lookup:
        missing.exists("k")
    assert not isinstance(lookup.value, StoreConflict)
