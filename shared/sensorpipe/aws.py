"""boto3 clients with the standard configuration and nothing hard-coded.

Endpoint, region and credentials come from the usual AWS chain (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_SQS``, ``AWS_REGION``, profiles, instance roles), so LocalStack,
moto's server and real AWS need no code change. botocore's own ``standard`` retry mode
handles throttling and transient 5xx errors.

Every client the project makes comes from :func:`sqs_client` or :func:`s3_client`. With
``SENSORPIPE_AWS_CALL_LOG=/path/calls.jsonl`` set, each of them also records every API
call it makes (not every retry) as one JSON line: which process made it, the AWS service,
the operation and the resource it touches (bucket and key, or queue name). That log is
how ``tests/deploy/test_iam.py`` proves the IAM policies of ``deploy/iam/`` grant what
the services use and nothing more. Unset, no hook is registered: no cost at all.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

CALL_LOG_ENV = "SENSORPIPE_AWS_CALL_LOG"
SERVICE_NAME_ENV = "SENSORPIPE_SERVICE_NAME"

# The read timeout must outlast a 20 s long poll.
_BASE = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
    s3={"addressing_style": "path"},
)

# Process names that are not the name of their policy (deploy/iam/<name>.json).
_ALIASES = {"provisioning": "provisioner", "provision": "provisioner"}


def _region(region: str | None) -> str | None:
    # botocore reads AWS_DEFAULT_REGION; AWS_REGION is the variable most tools document.
    return region or os.environ.get("AWS_REGION") or None


def sqs_client(region: str | None = None) -> SQSClient:
    client = boto3.session.Session().client("sqs", region_name=_region(region), config=_BASE)
    _record_calls(client)
    return client


def s3_client(region: str | None = None) -> S3Client:
    client = boto3.session.Session().client("s3", region_name=_region(region), config=_BASE)
    # botocore's own handler adds the header on this event; ours runs after it.
    client.meta.events.register("before-call.s3", _no_expect_continue)
    _record_calls(client)
    return client


def _no_expect_continue(params: dict[str, Any], **_kwargs: Any) -> None:
    """Send uploads without ``Expect: 100-continue``.

    botocore (1.40-1.44 at least) loops forever reading headers when a connection is
    closed cleanly right after the server's ``100 Continue``: neither its read timeout
    nor its retries end it, and the thread spins (a stateful shard then never commits
    again while its heartbeat keeps its messages leased; found by tests/e2e/test_chaos.py,
    upstream boto/botocore#3755). Without the header the same fault is an ordinary
    ``ConnectionClosedError``, retried like any other. The header is not signed, and
    sending small objects' bodies at once costs nothing.
    """
    params.get("headers", {}).pop("Expect", None)


def queue_url(sqs: SQSClient, name: str) -> str:
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


# -- the call log ---------------------------------------------------------------------


def process_name() -> str:
    """The name this process goes by in the call log (and in ``deploy/iam/``).

    ``$SENSORPIPE_SERVICE_NAME`` if set; else the module run with ``python -m``
    (``services.enricher`` -> ``enricher``, ``edge.uploader`` -> ``uploader``,
    ``sensorpipe.provisioning.cli`` -> ``provisioner``); else the program's own name
    without ``sensorpipe-`` (``sensorpipe-replay`` -> ``replay``).
    """
    explicit = os.environ.get(SERVICE_NAME_ENV, "").strip()
    if explicit:
        return explicit
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return name_of(spec.name if spec is not None else None, sys.argv[0] if sys.argv else "")


def name_of(main_module: str | None, program: str) -> str:
    """A process's name from the module ``python -m`` ran, else from its program path."""
    if main_module:
        parts = [p for p in main_module.split(".") if p not in ("__main__", "cli")]
        name = parts[-1] if parts else main_module
    else:
        name = Path(program).stem.removeprefix("sensorpipe-") or "python"
    return _ALIASES.get(name, name)


def call_resource(service: str, params: dict[str, Any]) -> dict[str, str]:
    """What one call touches: ``bucket`` (+ ``key`` or ``prefix``) for S3, ``queue``
    (the name, from the URL or ``QueueName``) for SQS."""
    out: dict[str, str] = {}
    if service == "s3":
        for field, name in (("Bucket", "bucket"), ("Key", "key"), ("Prefix", "prefix")):
            if isinstance(params.get(field), str):
                out[name] = params[field]
    elif service == "sqs":
        if isinstance(params.get("QueueUrl"), str):
            out["queue"] = params["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
        elif isinstance(params.get("QueueName"), str):
            out["queue"] = params["QueueName"]
    return out


class CallLog:
    """Appends one JSON line per call to a file, safely from many threads and processes:
    each line is one ``write`` on a descriptor opened with ``O_APPEND``."""

    _lock = threading.Lock()
    _fds: dict[str, int] = {}  # one descriptor per path per process

    def __init__(self, path: str, process: str) -> None:
        self.path = path
        self.process = process

    def _fd(self) -> int:
        with self._lock:
            fd = self._fds.get(self.path)
            if fd is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._fds[self.path] = fd
            return fd

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
        os.write(self._fd(), line.encode("utf-8"))

    def hook(self, service: str) -> Any:
        """A ``provide-client-params`` handler: botocore emits it once per API call with
        the caller's parameters; returning None leaves them untouched."""

        def record(params: dict[str, Any], model: Any, **_kwargs: Any) -> None:
            entry: dict[str, Any] = {
                "process": self.process,
                "pid": os.getpid(),
                "service": service,
                "operation": model.name,
            }
            entry.update(call_resource(service, params))
            self.write(entry)

        return record


def _record_calls(client: BaseClient) -> None:
    path = os.environ.get(CALL_LOG_ENV, "").strip()
    if not path:
        return
    service = client.meta.service_model.service_name
    log = CallLog(path, process_name())
    client.meta.events.register(f"provide-client-params.{service}", log.hook(service))
