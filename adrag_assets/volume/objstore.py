"""A volume in an object store bucket: ``s3://BUCKET/PREFIX`` (and ``gs://``, ``az://``).

Why obstore (and not fsspec/s3fs): it is a thin binding of the Rust ``object_store`` crate,
the same one deltalake uses for the tables, so one set of the provider's standard variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ALLOW_HTTP``; ``GOOGLE_*`` / ``AZURE_*`` likewise) configures both, read by the
library itself, with the same meaning. s3fs goes through botocore, which knows
``AWS_ENDPOINT_URL`` but not ``AWS_ALLOW_HTTP``, and brings aiobotocore's version pins.

What differs from a folder, and how it is kept the same for the callers:

- There are no folders, links, FIFOs or undecodable names: every listed object is a
  regular file. A key ending in ``/`` (a "folder marker" some tools write) is skipped.
- There is no mtime_ns. The change stamp is the object's last-modified time to the second
  plus, below the second, a number taken from its ETag: S3 keeps last-modified to the
  second only, so an object replaced within the same second by one of the same size would
  otherwise look unchanged; with the ETag in the stamp any new content changes it, and the
  stamp still reads as the right time where it is shown.
- A put is atomic per object, but several objects are not: :meth:`write_all_or_nothing`
  writes them in order (the sidecar before the ad) and deletes what it wrote when one fails,
  so a half ad is never left behind.
- Errors from the store (wrong credentials, a missing bucket) become one
  :class:`VolumeUnavailable` line naming the bucket; the provider's message, which may be
  long, is chained but never carries the secret key (requests are signed, not sent with it).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import obstore
from obstore.store import from_url

from adrag_assets.volume import FileStat, FileTooLarge, NotARegularFile, VolumeUnavailable

_CREDENTIAL_HINTS = {
    "s3": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL, AWS_REGION)",
    "gs": "GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS",
    "az": "AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY",
}


class ObjectStoreVolume:
    """Objects under ``scheme://bucket/prefix``; paths are keys relative to the prefix."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.scheme, _, rest = self.url.partition("://")
        self.bucket = rest.split("/", 1)[0]
        # from_url reads the provider's standard variables (AWS_*, ...) itself.
        self._store = from_url(self.url)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        return f"ObjectStoreVolume({self.url!r})"

    @property
    def uri(self) -> str:
        return self.url

    def display(self, path: str) -> str:
        return f"{self.url}/{self.relative(path)}"

    def relative(self, path: str | Path) -> str:
        """``path`` as a key relative to the volume (a full URL under it is accepted too);
        ValueError for anything that would leave the prefix."""
        raw = str(path)
        if raw.startswith(self.url + "/"):
            raw = raw[len(self.url) + 1 :]
        if not raw.strip() or "\x00" in raw or "://" in raw:
            raise ValueError(f"{raw!r} is not a usable path in the volume {self.url}")
        parts = PurePosixPath(raw).parts
        if raw.startswith("/") or ".." in parts:
            raise ValueError(f"path {raw!r} leads outside the volume {self.url}")
        return "/".join(p for p in parts if p not in ("", "."))

    def check(self) -> None:
        # One listing call, at most one object: enough to see a missing bucket or bad keys.
        with self._errors(""):
            next(iter(obstore.list(self._store, "raw/", chunk_size=1)), None)

    # -- reading -----------------------------------------------------------------------------

    def walk(self, prefix: str) -> Iterator[FileStat]:
        top = self.relative(prefix).rstrip("/") + "/"
        entries: list[FileStat] = []
        with self._errors(top):
            for batch in obstore.list(self._store, top):
                for meta in batch:
                    path = meta["path"]
                    # Hidden files and folders: upload tools' temporary files, as on disk.
                    if path.endswith("/") or any(p.startswith(".") for p in path.split("/")):
                        continue
                    entries.append(_stat(path, meta))
        # Sorted like the local walk, so every listing of the same objects is the same.
        yield from sorted(entries, key=lambda e: e.path)

    def stat(self, path: str) -> FileStat | None:
        key = self.relative(path)
        try:
            with self._errors(key):
                meta = obstore.head(self._store, key)
        except FileNotFoundError:
            return None
        return _stat(key, meta)

    def read_bytes(self, path: str, max_bytes: int | None = None) -> bytes:
        key = self.relative(path)
        if key.endswith("/"):
            raise NotARegularFile(f"{path}: not a regular file (folder marker)")
        with self._errors(key):
            result = obstore.get(self._store, key)
            size = int(result.meta["size"])
            if max_bytes is not None and size > max_bytes:
                raise FileTooLarge(path, size, max_bytes)
            return bytes(result.bytes())

    def local_path(self, path: str) -> Path:
        """A copy in a temp folder this volume owns (removed when it is garbage-collected or
        the process ends), named like the object so tools that look at the suffix work."""
        key = self.relative(path)
        data = self.read_bytes(key)
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="adrag-volume-")
            weakref.finalize(self, self._tmp.cleanup)
        target = Path(self._tmp.name) / hashlib.sha256(key.encode()).hexdigest()[:16]
        target.mkdir(exist_ok=True)
        out = target / PurePosixPath(key).name
        out.write_bytes(data)
        return out

    # -- writing -----------------------------------------------------------------------------

    def write_all_or_nothing(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Each put is atomic (an object appears whole or not at all); in order, so the
        sidecar is there before its ad. On any failure the objects already written are
        deleted again."""
        targets = [(self.relative(rel), data) for rel, data in files]
        done: list[str] = []
        try:
            for key, data in targets:
                with self._errors(key):
                    obstore.put(self._store, key, data)
                done.append(key)
        except BaseException:
            with contextlib.suppress(Exception):
                if done:
                    obstore.delete(self._store, done)
            raise

    def delete(self, paths: Iterable[str]) -> None:
        keys = [self.relative(p) for p in paths]
        if keys:
            # Deleting a missing key succeeds in S3; there are no folders left to remove.
            with self._errors(keys[0]):
                obstore.delete(self._store, keys)

    # -- errors ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, FileTooLarge, NotARegularFile):
            raise
        except Exception as e:
            raise VolumeUnavailable(self._explain(e, key)) from e

    def _explain(self, error: Exception, key: str) -> str:
        text = str(error)
        where = f"the volume {self.url} (bucket {self.bucket!r})"
        if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
            return f"{where}: the bucket does not exist; create it or fix ADRAG_VOLUME"
        denied = ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "401")
        name = type(error).__name__
        refused = name in ("PermissionDeniedError", "UnauthenticatedError")
        if refused or any(d in text for d in denied):
            hint = _CREDENTIAL_HINTS.get(self.scheme, "the store's credentials")
            return f"{where}: access denied; check {hint}"
        if "error sending request" in text.lower() or "connect" in text.lower():
            return f"{where}: cannot reach the store; check the endpoint (AWS_ENDPOINT_URL)"
        return f"{where}: {name} on {key!r}"


def _stat(path: str, meta: Any) -> FileStat:
    modified = meta["last_modified"]
    seconds = int(modified.timestamp())
    etag = str(meta.get("e_tag") or meta.get("version") or "")
    below = int(hashlib.sha256(etag.encode()).hexdigest()[:12], 16) % 1_000_000_000
    return FileStat(path, int(meta["size"]), seconds * 1_000_000_000 + below)
