"""One conditional object store, on S3 or in memory.

The stateful stages keep their checkpoints, and write their outputs, through this one
interface: ``get`` a key (body, ETag, metadata, or None when absent; ``get_many`` reads
several at once, ``keys`` lists a prefix) and ``put`` a key,
optionally only if it is absent (``Expect.ABSENT``) or only if it still has the ETag
last read or written (``expect="<etag>"``). A refused condition raises
:class:`StoreConflict`: another writer came first. That is how a stage finds out that a
second process took over its shard (checkpoint writes are conditional) and how "first
writer wins" records are kept (the notifier's ledger).

:class:`S3ObjectStore` is the real one (one bucket, S3's own conditional writes:
``If-Match`` / ``If-None-Match``); :class:`MemoryObjectStore` is its in-memory twin with
the same semantics, for unit tests that need no AWS at all.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from sensorpipe.errors import SensorPipeError
from sensorpipe.runtime.metrics import S3_OBJECTS_WRITTEN, S3_WRITE_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CONFLICT_CODES = ("PreconditionFailed", "ConditionalRequestConflict")
_ABSENT_CODES = ("NoSuchKey", "404", "NotFound")


class StoreError(SensorPipeError):
    """A read or write failed (after botocore's own retries); retrying may succeed."""


class StoreConflict(StoreError):
    """A conditional write was refused: the key is not as this writer last saw it."""

    def __init__(self, uri: str, expected: str) -> None:
        self.uri = uri
        super().__init__(
            f"{uri} was written by another process (expected {expected})",
            hint="one consumer per shard: stop the other process or let this one re-read",
        )


class Expect(Enum):
    ANY = "any"  # overwrite whatever is there
    ABSENT = "absent"  # only if the key does not exist yet


@dataclass(frozen=True, slots=True)
class Stored:
    body: bytes
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Put:
    """One object to write unconditionally (see :meth:`ObjectStore.put_many`)."""

    key: str
    body: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    gzipped: bool = False


class ObjectStore(Protocol):
    """Objects of one bucket, read and written with optional conditions."""

    @property
    def bucket(self) -> str: ...

    def uri(self, key: str) -> str: ...

    def get(self, key: str) -> Stored | None:
        """The object, or None if the key does not exist; StoreError if unreadable."""
        ...

    def get_many(self, keys: list[str]) -> list[Stored | None]:
        """:meth:`get` of every key (in parallel where that helps), in the keys' order;
        StoreError if any read failed."""
        ...

    def exists(self, key: str) -> bool: ...

    def keys(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, sorted; StoreError if unlistable."""
        ...

    def put(
        self,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        gzipped: bool = False,
        expect: Expect | str = Expect.ANY,
    ) -> str:
        """Write the object if ``expect`` holds (an ETag: still that version); return its
        new ETag. StoreConflict if the condition fails, StoreError on other failures."""
        ...

    def put_many(self, puts: list[Put]) -> None:
        """Write many objects (in parallel where that helps); StoreError if any failed
        (the others may be written: every write is safe to repeat)."""
        ...


class S3ObjectStore:
    """An :class:`ObjectStore` over one S3 bucket."""

    def __init__(self, s3: S3Client, bucket: str, *, service: str, threads: int = 8) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._service = service
        # Each PUT is a round trip of tens of milliseconds: several go out at once.
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"s3-{bucket[-24:]}")

    @property
    def bucket(self) -> str:
        return self._bucket

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    def get(self, key: str) -> Stored | None:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _ABSENT_CODES:
                return None
            raise StoreError(f"reading {self.uri(key)} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"reading {self.uri(key)} failed: {exc}") from exc
        return Stored(body, response["ETag"], dict(response.get("Metadata", {})))

    def get_many(self, keys: list[str]) -> list[Stored | None]:
        if len(keys) <= 1:
            return [self.get(key) for key in keys]
        return list(self._pool.map(self.get, keys))

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            )
            for page in pages:
                out.extend(item["Key"] for item in page.get("Contents", []))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise StoreError(f"listing {self.uri(prefix)} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"listing {self.uri(prefix)} failed: {exc}") from exc
        return sorted(out)

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _ABSENT_CODES:
                return False
            raise StoreError(f"looking up {self.uri(key)} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"looking up {self.uri(key)} failed: {exc}") from exc
        return True

    def put(
        self,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        gzipped: bool = False,
        expect: Expect | str = Expect.ANY,
    ) -> str:
        args: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
            "Metadata": {k: str(v) for k, v in (metadata or {}).items()},
        }
        if gzipped:
            args["ContentEncoding"] = "gzip"
        if expect is Expect.ABSENT:
            args["IfNoneMatch"] = "*"
        elif isinstance(expect, str):
            args["IfMatch"] = expect
        started = time.perf_counter()
        try:
            response = self._s3.put_object(**args)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            # If-Match on a key that is gone is answered 404 NoSuchKey, not 412: the key
            # is not as this writer last saw it either (MemoryObjectStore says so too).
            gone = isinstance(expect, str) and code in _ABSENT_CODES
            if (code in _CONFLICT_CODES and expect is not Expect.ANY) or gone:
                raise StoreConflict(self.uri(key), _expected(expect)) from exc
            raise StoreError(f"writing {self.uri(key)} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"writing {self.uri(key)} failed: {exc}") from exc
        S3_WRITE_SECONDS.labels(self._service).observe(time.perf_counter() - started)
        S3_OBJECTS_WRITTEN.labels(self._service, self._bucket).inc()
        return str(response["ETag"])

    def put_many(self, puts: list[Put]) -> None:
        def one(item: Put) -> str:
            return self.put(
                item.key,
                item.body,
                metadata=item.metadata,
                content_type=item.content_type,
                gzipped=item.gzipped,
            )

        if len(puts) == 1:
            one(puts[0])
            return
        list(self._pool.map(one, puts))


class MemoryObjectStore:
    """The in-memory twin of :class:`S3ObjectStore`: same conditions, same answers."""

    def __init__(self, bucket: str = "memory") -> None:
        self._bucket = bucket
        self.objects: dict[str, Stored] = {}
        self.puts = 0  # writes accepted, for tests that count them
        self._lock = threading.Lock()

    @property
    def bucket(self) -> str:
        return self._bucket

    def uri(self, key: str) -> str:
        return f"memory://{self._bucket}/{key}"

    def get(self, key: str) -> Stored | None:
        with self._lock:
            return self.objects.get(key)

    def get_many(self, keys: list[str]) -> list[Stored | None]:
        return [self.get(key) for key in keys]

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(key for key in self.objects if key.startswith(prefix))

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self.objects

    def put(
        self,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        gzipped: bool = False,
        expect: Expect | str = Expect.ANY,
    ) -> str:
        with self._lock:
            current = self.objects.get(key)
            refused = (expect is Expect.ABSENT and current is not None) or (
                isinstance(expect, str) and (current is None or current.etag != expect)
            )
            if refused:
                raise StoreConflict(self.uri(key), _expected(expect))
            etag = f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
            self.objects[key] = Stored(bytes(body), etag, dict(metadata or {}))
            self.puts += 1
            return etag

    def put_many(self, puts: list[Put]) -> None:
        for item in puts:
            self.put(item.key, item.body, metadata=item.metadata)


def _expected(expect: Expect | str) -> str:
    return "no object" if expect is Expect.ABSENT else f"ETag {expect}"
