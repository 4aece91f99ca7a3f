"""The ``s3://bucket/prefix`` store, on the ``minio`` SDK (MinIO, AWS S3, any S3-protocol server).

Endpoint and credentials come from the environment (see :meth:`S3Settings.from_env`), never from
the URL, so a store URL can be shown, logged and put in a run record. Every request goes through
:func:`jupyter_pipeline.store.s3errors.call`: transient failures are retried with bounded backoff, the
rest become a one-line :class:`~jupyter_pipeline.exceptions.StoreError` naming the endpoint.

Guarantees the rest of the package relies on:

- ``put_bytes`` is one PUT, which S3 publishes atomically: a reader sees the old ``run.json`` or
  the new one, never a part of it.
- ``put_file``/``get_file`` stream (multipart upload of fixed-size parts, chunked download into a
  temporary file renamed at the end); memory stays at a few parts, whatever the file size.
- ``create_exclusive`` is exclusive across concurrent writers on any strongly consistent server
  (AWS S3, MinIO); see its docstring for why it does not rely on ``If-None-Match``.
- A missing bucket is created on first write, and by :meth:`S3Store.check`, only when the store
  may create (``open_store(url, create=False)`` says it may not: pods on Kubeflow, ``serve``,
  ``deploy``); otherwise, and when the server refuses ``CreateBucket``, the error names the bucket,
  the access key id and what to set.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from io import BytesIO
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error
from minio.helpers import check_bucket_name

from . import s3errors
from ..exceptions import ArtifactNotFound, StoreError
from .base import Store, stores

#: The variable the store's endpoint is read from first, and set in for child processes (kernels, replicas).
ENDPOINT_ENV = "JUPYTER_PIPELINE_S3_ENDPOINT"
ENDPOINT_VARS = (ENDPOINT_ENV, "MINIO_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
KEY_VARS = (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"),
            ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"))
REGION_VARS = ("JUPYTER_PIPELINE_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "MINIO_REGION")
DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
PART_SIZE = 16 * 1024 * 1024  # multipart part size: memory per upload is ~3 parts in flight


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 server is and how to sign requests; the secret never appears in ``repr``."""

    endpoint: str = DEFAULT_ENDPOINT  # scheme://host[:port]
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    credential_source: str = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    retry: s3errors.RetryPolicy = s3errors.RetryPolicy()

    @classmethod
    def from_env(cls, env=None) -> "S3Settings":
        """Read ``JUPYTER_PIPELINE_S3_ENDPOINT`` (or ``MINIO_ENDPOINT``), ``AWS_ACCESS_KEY_ID``/
        ``AWS_SECRET_ACCESS_KEY`` (or ``MINIO_ACCESS_KEY``/``MINIO_SECRET_KEY``) and friends.

        An endpoint without a scheme uses TLS unless ``JUPYTER_PIPELINE_S3_SECURE`` (or
        ``MINIO_SECURE``) is ``false``; ``http://``/``https://`` endpoints say it themselves.
        """
        env = os.environ if env is None else env
        raw = cls.configured_endpoint(env) or DEFAULT_ENDPOINT
        access = secret = None
        source = "/".join(KEY_VARS[0])
        for key_var, secret_var in KEY_VARS:
            if env.get(key_var):
                access, secret, source = env[key_var], env.get(secret_var), f"{key_var}/{secret_var}"
                break
        region = next((env[v] for v in REGION_VARS if env.get(v)), None)
        policy = s3errors.RetryPolicy(attempts=max(1, int(env.get("JUPYTER_PIPELINE_S3_RETRIES", 4))))
        return cls(
            endpoint=raw, access_key=access, secret_key=secret,
            session_token=env.get("AWS_SESSION_TOKEN") or None, region=region,
            credential_source=source, retry=policy,
            read_timeout=float(env.get("JUPYTER_PIPELINE_S3_TIMEOUT", 120)),
        )

    @staticmethod
    def configured_endpoint(env=None) -> str | None:
        """The endpoint the environment names (``scheme://host:port``), or None when it names none."""
        env = os.environ if env is None else env
        var = next((v for v in ENDPOINT_VARS if env.get(v)), None)
        if var is None:
            return None
        raw = env[var].strip().rstrip("/")
        if "://" not in raw:
            secure = _flag(env.get("JUPYTER_PIPELINE_S3_SECURE", env.get("MINIO_SECURE")), True)
            raw = ("https://" if secure else "http://") + raw
        if "@" in urlparse(raw).netloc:
            # Never echo the endpoint here: it would carry the secret into logs.
            raise StoreError(f"The S3 endpoint in {var} carries credentials (user:password@host); give only "
                             "scheme://host:port there and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                             "(or MINIO_ACCESS_KEY/MINIO_SECRET_KEY) instead.")
        return raw

    @property
    def secure(self) -> bool:
        return self.endpoint.startswith("https://")

    @property
    def host(self) -> str:
        return urlparse(self.endpoint).netloc


# One client (and connection pool) per process and settings: stores are opened often (every
# log_metric opens one) and reusing connections is most of S3 latency on a LAN. Keyed by pid so a
# forked child never shares a parent's sockets.
_clients: dict[tuple, Minio] = {}
_clients_lock = threading.Lock()


def client_for(settings: S3Settings) -> Minio:
    """The shared :class:`minio.Minio` client for ``settings`` in this process."""
    key = (os.getpid(), settings)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
                maxsize=16,
                retries=False,  # retries are ours (s3errors.call), bounded and reported
                cert_reqs="CERT_REQUIRED",
                ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            )
            # Off AWS, a region saves the GetBucketLocation round trip MinIO would answer anyway.
            on_aws = settings.host.endswith(".amazonaws.com")
            region = settings.region or (None if on_aws else "us-east-1")
            client = Minio(settings.host, access_key=settings.access_key, secret_key=settings.secret_key,
                           session_token=settings.session_token, secure=settings.secure,
                           region=region, http_client=http)
            _clients[key] = client
        return client


class S3Store(Store):
    """Artifacts in ``s3://bucket/prefix`` on an S3-protocol server."""

    scheme = "s3"
    #: Rounds of the claim protocol in :meth:`create_exclusive` before a contended key counts as taken.
    CLAIM_ROUNDS = 12

    def __init__(self, url: str, settings: S3Settings | None = None):
        super().__init__(url)
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.hostname:
            raise StoreError(f"An S3 store URL looks like s3://bucket/prefix, got {url!r}.")
        if "@" in parsed.netloc or parsed.password:
            # Never echo the URL here: it would carry the secret into logs.
            raise StoreError("Credentials do not belong in an s3:// URL; set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY (or MINIO_ACCESS_KEY/MINIO_SECRET_KEY) instead.")
        self.bucket = parsed.netloc
        try:
            check_bucket_name(self.bucket, strict=True)
        except ValueError:
            raise StoreError(f"Bucket name '{self.bucket}' in {url} is not valid: use 3-63 lowercase "
                             "letters, digits, '.' or '-'.") from None
        self.prefix = parsed.path.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.settings = settings or S3Settings.from_env()
        self.client = client_for(self.settings)
        self._where = s3errors.Where(self.settings.endpoint, self.url, self.bucket,
                                     self.settings.credential_source, self.settings.access_key)
        self._bucket_ready = False

    # -- plumbing -------------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        key = key.lstrip("/")
        if any(part in ("..", ".") for part in key.split("/")):
            raise StoreError(f"Key {key!r} points outside the store {self.url}.")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn):
        return s3errors.call(fn, self._where, what, self.settings.retry)

    def _write(self, what: str, fn):
        """Run a write; when the bucket is missing, create it and write again.

        A bucket just created (here or by a concurrent writer) can take a moment to be visible
        to every request (AWS documents this; moto shows it under concurrent creation), so a
        write that still sees NoSuchBucket is tried again a few times before giving up.
        """
        for attempt in range(4):
            try:
                return self._call(what, fn)
            except StoreError as exc:
                missing = isinstance(exc.__cause__, S3Error) and exc.__cause__.code == "NoSuchBucket"
                if not missing or attempt == 3:
                    raise
            if self._bucket_ready:
                time.sleep(0.1 * (attempt + 1))
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        where = self._where
        if not self.may_create:
            raise StoreError(
                f"Bucket '{self.bucket}' does not exist at {where.endpoint}, and this store does not create "
                f"buckets (on Kubeflow nothing does: {where.who} may not); create it, or {s3errors.STORE_HINT}."
            ) from None
        try:
            self._call(f"creating bucket '{self.bucket}'", lambda: self.client.make_bucket(self.bucket))
        except StoreError as exc:
            code = getattr(exc.__cause__, "code", None)
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                pass  # created by a concurrent writer: fine
            elif code == "AccessDenied":
                raise StoreError(
                    f"Bucket '{self.bucket}' does not exist at {where.endpoint} and {where.who} may not "
                    f"create it (CreateBucket: AccessDenied); create the bucket, or {s3errors.STORE_HINT}."
                ) from None
            else:
                raise
        self._bucket_ready = True

    # -- primitives -------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        self._write(f"writing {key}", lambda: self.client.put_object(
            self.bucket, name, BytesIO(data), len(data), part_size=PART_SIZE))

    def get_bytes(self, key: str) -> bytes:
        name = self._name(key)

        def get() -> bytes:
            response = self.client.get_object(self.bucket, name)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._read(f"reading {key}", get)

    def put_file(self, key: str, path) -> None:
        name, path = self._name(key), os.fspath(path)
        self._write(f"uploading {key}", lambda: self.client.fput_object(
            self.bucket, name, path, part_size=PART_SIZE))

    def get_file(self, key: str, path) -> None:
        name, path = self._name(key), os.fspath(path)
        # fget_object streams 1 MiB chunks into "<path>.<etag>.part.minio", renamed when complete.
        self._read(f"downloading {key}", lambda: self.client.fget_object(self.bucket, name, path))

    def _read(self, what: str, fn):
        try:
            return self._call(what, fn)
        except StoreError as exc:
            if getattr(exc.__cause__, "code", None) in ("NoSuchKey", "NoSuchBucket"):
                raise ArtifactNotFound(f"{what.split(' ', 1)[1]} is not in store {self.url}") from None
            raise

    def exists(self, key: str) -> bool:
        name = self._name(key)

        def stat() -> bool:
            try:
                self.client.stat_object(self.bucket, name)
                return True
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchBucket", "ResourceNotFound"):
                    return False
                raise

        return self._call(f"looking up {key}", stat)

    def list(self, prefix: str = "", recursive: bool = False) -> list[str]:
        # Same meaning as LocalStore.list: ``prefix`` names a folder, keys come back store-relative.
        folder = prefix.strip("/") + "/" if prefix.strip("/") else ""
        base = self._name(folder) if folder else (self.prefix + "/" if self.prefix else "")
        cut = len(self.prefix) + 1 if self.prefix else 0

        def names() -> list[str]:
            try:
                objects = self.client.list_objects(self.bucket, prefix=base or None, recursive=recursive)
                return sorted(obj.object_name[cut:] for obj in objects)
            except S3Error as exc:
                if exc.code == "NoSuchBucket":
                    return []
                raise

        return self._call(f"listing {folder or '/'}", names)

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            self._call(f"deleting {key}", lambda: self.client.remove_object(self.bucket, name))
        except StoreError as exc:
            if getattr(exc.__cause__, "code", None) not in ("NoSuchKey", "NoSuchBucket"):
                raise

    def check(self) -> None:
        """Fail now, with one line, if the endpoint is unreachable, rejects the credentials, or
        the bucket is missing and cannot be created; create the bucket when it is missing and the
        store may create it."""
        probe = self._name("") or None

        def list_one():
            # A GET (not HEAD) so the server's error body tells wrong credentials from no access.
            next(iter(self.client.list_objects(self.bucket, prefix=probe)), None)

        try:
            self._call(f"opening store {self.url}", list_one)
        except StoreError as exc:
            if getattr(exc.__cause__, "code", None) != "NoSuchBucket":
                raise
            self._ensure_bucket()
        self._bucket_ready = True

    def uri(self, key: str) -> str:
        return f"{self.url}/{key.lstrip('/')}"

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Write ``key`` unless it exists or another writer claims it first.

        S3's ``If-None-Match: *`` would do this in one request on AWS and recent MinIO, but
        servers that predate it ignore the header and overwrite, and moto checks then writes
        without a lock, so it cannot be trusted everywhere. Instead each writer puts a unique
        candidate object under ``<key>.claims/`` and lists them: it wins only if its candidate is
        the only one. With read-after-write consistent listing (AWS S3 since 2020, MinIO always)
        two winners are impossible: the later of two candidates is listed by its own writer after
        the earlier one exists, and a winner never removes its candidate. Writers that see each
        other withdraw and retry after a random pause; a key still contended after
        :attr:`CLAIM_ROUNDS` rounds counts as taken (``False``), which is what the model registry
        needs (it moves on to the next version).
        """
        claims = f"{key}.claims/"
        mine = f"{claims}{uuid.uuid4().hex}"
        for _round in range(self.CLAIM_ROUNDS):
            if self.exists(key):
                return False
            self.put_bytes(mine, b"")
            if self.list(claims, recursive=True) == [mine]:
                self.put_bytes(key, data)
                return True
            self.delete(mine)
            time.sleep(random.uniform(0.01, 0.05) * (1 + _round))
        return False


stores.register("s3", S3Store)
