"""What went wrong talking to an S3 server: transient or not, and a one-line message for people.

:func:`call` runs one S3 request with bounded, jittered exponential backoff on transient failures
(connection refused or reset, timeouts, HTTP 5xx, ``SlowDown``) and turns everything else into a
:class:`~jupyter_pipeline.exceptions.StoreError` that names the endpoint and the operation. It
never puts credentials into a message: it only knows the names of the variables they came from.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

from ..exceptions import ArtifactNotFound, StoreError

T = TypeVar("T")

#: S3 error codes that say "try again later" rather than "you asked for something wrong".
TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed",
    "OperationAborted", "XMinioServerNotInitialized", "XMinioStorageFull",
})
#: S3 error codes meaning the access key or secret is wrong, unknown or expired.
CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
    "InvalidClientTokenId", "AuthorizationHeaderMalformed", "XAmzContentSHA256Mismatch",
})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request is tried again."""

    attempts: int = 4
    backoff: float = 0.25  # seconds before the 2nd attempt; doubles after each failure
    max_backoff: float = 4.0

    def delay(self, failures: int) -> float:
        base = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        return base * random.uniform(0.5, 1.0)  # jitter: concurrent clients do not retry in step


@dataclass(frozen=True)
class Where:
    """What a message may say about the store: endpoint, location, credential variable names."""

    endpoint: str
    location: str  # s3://bucket/prefix
    bucket: str
    credential_source: str  # e.g. "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" (names only)
    #: The access key id (never the secret): on Kubeflow's SeaweedFS it names the user (the namespace).
    access_key: str | None = None

    @property
    def who(self) -> str:
        """The credentials as a message may name them: the key id and where it came from."""
        if self.access_key:
            return f"access key '{self.access_key}' (from {self.credential_source})"
        return f"the credentials in {self.credential_source}"


#: What to set when the store's bucket cannot be used: every front reads these (see jupyter_pipeline.settings).
STORE_HINT = ("set the store to a bucket these credentials may write (--store or JUPYTER_PIPELINE_STORE; for "
              "Kubeflow's pods --kfp-store, JUPYTER_PIPELINE_KFP_STORE or the notebook's kfp_store setting)")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt."""
    if isinstance(exc, S3Error):
        return exc.code in TRANSIENT_CODES
    if isinstance(exc, ServerError):
        return exc.status_code >= 500
    if isinstance(exc, InvalidResponseError):
        return getattr(exc, "_code", 0) >= 500
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False  # a TLS mismatch does not heal by waiting
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def _network_reason(exc: BaseException) -> str:
    """A few words for a transport failure: 'connection refused', 'timed out'..."""
    inner = getattr(exc, "reason", None) or exc
    text = str(inner).lower()
    if "refused" in text:  # checked first: urllib3's NewConnectionError is a timeout subclass
        return "connection refused"
    if isinstance(inner, (urllib3.exceptions.TimeoutError, TimeoutError)) or "timed out" in text:
        return "timed out"
    if "name or service not known" in text or "nodename nor servname" in text or "resolution" in text:
        return "host name not found"
    if "reset" in text or "aborted" in text or isinstance(inner, urllib3.exceptions.ProtocolError):
        return "connection dropped"
    return type(inner).__name__


def describe(exc: BaseException, where: Where, what: str, attempts: int = 1) -> StoreError:
    """The :class:`StoreError` (one line, no credentials) for ``exc`` raised while doing ``what``."""
    tries = f" (tried {attempts} times)" if attempts > 1 else ""
    if isinstance(exc, S3Error):
        code = exc.code or "error"
        if code == "NoSuchKey":
            return ArtifactNotFound(f"{what}: no such object in {where.location}")
        if code in CREDENTIAL_CODES:
            return StoreError(
                f"The S3 endpoint {where.endpoint} rejected the credentials ({code}) while {what}; "
                f"check {where.credential_source}."
            )
        if code == "NoSuchBucket":
            return StoreError(f"Bucket '{where.bucket}' does not exist at {where.endpoint} ({what}).")
        if code == "AccessDenied":
            # A 403 cannot tell "no permission" from "no such bucket": AWS answers a missing bucket
            # with 404, while servers that hide what a user may not list (and IAM-checking ones
            # such as moto's) answer 403 before they look. Say both, so the message is true for
            # whichever the server meant.
            return StoreError(
                f"Access denied to {where.location} at {where.endpoint} while {what}: either "
                f"{where.who} may not do this in bucket '{where.bucket}', or the bucket does not exist "
                "(this server may answer a missing bucket with AccessDenied). Check that the bucket exists "
                f"and that this key may list, read and write it, or {STORE_HINT}."
            )
        if code in TRANSIENT_CODES:
            return StoreError(f"The S3 endpoint {where.endpoint} kept failing ({code}) while {what}{tries}.")
        return StoreError(f"The S3 endpoint {where.endpoint} refused {what}: {code}.")
    if isinstance(exc, (ServerError, InvalidResponseError)):
        status = getattr(exc, "status_code", None) or getattr(exc, "_code", "?")
        return StoreError(f"The S3 endpoint {where.endpoint} failed while {what}: HTTP {status}{tries}.")
    if isinstance(exc, urllib3.exceptions.SSLError):
        return StoreError(
            f"TLS handshake with the S3 endpoint {where.endpoint} failed while {what}; if the server "
            "speaks plain HTTP, write the endpoint as http://host:port."
        )
    return StoreError(
        f"Cannot reach the S3 endpoint {where.endpoint} ({_network_reason(exc)}) while {what}{tries}; "
        "is the server running and JUPYTER_PIPELINE_S3_ENDPOINT right?"
    )


def call(fn: Callable[[], T], where: Where, what: str, policy: RetryPolicy,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``fn`` with retries on transient failures; raise a :class:`StoreError` otherwise."""
    failures = 0
    while True:
        try:
            return fn()
        except (S3Error, ServerError, InvalidResponseError, urllib3.exceptions.HTTPError,
                ConnectionError, TimeoutError) as exc:
            failures += 1
            if not is_transient(exc) or failures >= policy.attempts:
                error = describe(exc, where, what, failures)
                error.transient = is_transient(exc)
                raise error from exc
            sleep(policy.delay(failures))
