"""The artifact store behind an interface: a local folder (the default) or any fsspec URL.

``ADAPTER_REGISTRY_ARTIFACTS`` (or ``--artifacts``) names the store. A plain path or ``file://``
URL is a local :class:`~registry.artifacts.ArtifactStore`; anything else (``s3://bucket/prefix``,
``gcs://…``, ``memory://…``) is a :class:`RemoteArtifactStore` over fsspec, with the same
content-addressed layout (``<prefix>/<sha[:2]>/<sha>/`` holding the files and their manifest) and
the same promises:

- **Verified on every read.** A read downloads into a local cache (``<home>/cache/artifacts``,
  itself a local store) and re-hashes every byte against the manifest and the id; a cached copy is
  re-hashed on every open too. ``verify`` always checks the remote bytes.
- **Atomic publication, no overwrite.** Files are uploaded under a staging key
  (``<prefix>/tmp/<sha12>-<uuid>/``), read back and hashed, copied to their final keys, and the
  manifest goes last with a create-only write (``If-None-Match: *`` on S3). An artifact exists
  only once its manifest does; a publication that stops half-way leaves keys that no reader
  trusts and that ``gc`` removes, and an existing manifest is never replaced.
- **Reuse and ``gc`` are safe against each other.** Every ``put`` first writes a lease
  (``<prefix>/leases/<sha>``, the time of the write) which restarts the artifact's age for the
  grace period of ``gc``; and the registry re-checks, under a lock that ``gc`` takes exclusively
  (:func:`hold_artifact_lock`), that the artifact still exists before it commits a row pointing
  at it, publishing it again if a ``gc`` took it meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from .artifacts import (
    MANIFEST,
    ArtifactStore,
    Leftover,
    StoredArtifact,
    manifest_bytes,
    source_listing,
    tree_digest,
)
from .errors import IntegrityError, InvalidInput, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .settings import Settings

#: The PostgreSQL advisory lock that registering writers hold shared and ``gc`` exclusive.
ARTIFACT_LOCK_KEY = 0x61727466  # "artf"
_CHUNK = 1 << 20


class ArtifactBackend(Protocol):
    """What the registry needs from an artifact store (local folder or fsspec URL)."""

    @property
    def root(self) -> Path: ...
    def put(self, source: Path) -> StoredArtifact: ...
    def open(self, sha256: str, what: str = "artifact") -> Path: ...
    def verify(self, sha256: str, what: str = "artifact") -> None: ...
    def exists(self, sha256: str) -> bool: ...
    def location(self, sha256: str) -> str: ...
    def path_for(self, sha256: str) -> Path: ...
    def touch(self, sha256: str) -> None: ...
    def age(self, sha256: str) -> float: ...
    def all_ids(self) -> list[str]: ...
    def leftovers(self) -> list[Leftover]: ...
    def remove(self, sha256: str) -> int: ...
    def remove_leftover(self, location: str) -> None: ...
    def staging(self, prefix: str = "stage") -> contextlib.AbstractContextManager[Path]: ...


def is_local(url: str) -> bool:
    """Return True when a store URL names a local folder (a path or ``file://``)."""
    return "://" not in url or url.startswith("file://")


def open_artifact_store(settings: Settings) -> ArtifactBackend:
    """Return the artifact store the settings name (local unless an fsspec URL is set)."""
    url = settings.artifacts_url
    if url is None or is_local(url):
        return ArtifactStore(settings.artifact_root)
    return RemoteArtifactStore(url, settings.home / "cache" / "artifacts")


def hold_artifact_lock(session: Session, *, exclusive: bool) -> None:
    """Take the lock that orders ``gc`` against writers, for the rest of the transaction.

    On SQLite every write transaction already holds the database's write lock (``BEGIN
    IMMEDIATE``), which orders them; PostgreSQL gets an advisory lock, shared by writers and
    exclusive for ``gc``, so writers do not wait for one another.
    """
    from sqlalchemy import text

    if session.get_bind().dialect.name != "postgresql":
        # A write transaction begins (and takes the lock) with its first statement: make sure
        # that happens now, before the caller looks at the artifacts.
        session.execute(text("SELECT 1"))
        return
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    session.execute(text(f"SELECT {fn}(:key)"), {"key": ARTIFACT_LOCK_KEY})


def ensure_published(store: ArtifactBackend, sha256: str, source: Path | None) -> None:
    """Publish ``source`` again when its artifact vanished (a ``gc`` took an old orphan that a
    write was reusing). Called under :func:`hold_artifact_lock`, before the row is committed."""
    if store.exists(sha256):
        return
    if source is None or not source.is_dir():
        raise NotFound(
            f"Artifact {sha256[:12]} was removed while being registered, and its files are gone.",
            hint="Run the command again.",
        )
    if store.put(source).sha256 != sha256:
        raise IntegrityError(
            f"Artifact source changed while being stored: {source}",
            hint="Nothing was stored; run the command again once nothing else writes to that "
            "folder.",
        )


def _hint(what: str) -> str:
    return "Run: adapter-registry verify" + (
        "" if what == "artifact" else " (then re-train or re-pull it)"
    )


class RemoteArtifactStore:
    """Immutable, content-addressed artifacts under an fsspec URL, read through a local cache."""

    def __init__(self, url: str, cache_root: Path) -> None:
        self.url = url.rstrip("/")
        self.cache = ArtifactStore(cache_root)
        self._fs: Any = None
        self._root = ""

    # ------------------------------------------------------------------ plumbing
    @property
    def fs(self) -> Any:
        """The fsspec filesystem (imported and connected on first use)."""
        if self._fs is None:
            try:
                from fsspec.core import url_to_fs

                # Not fsspec's shared instance: credentials and endpoint (AWS_* variables) are
                # read when this store connects, not when some earlier one did.
                self._fs, root = url_to_fs(self.url, skip_instance_cache=True)
            except ImportError as err:
                raise InvalidInput(
                    f"The artifact store {self.url} needs a package that is not installed: {err}.",
                    hint="Install it: pip install 'adapter-registry[s3]' (s3fs for s3:// URLs)",
                ) from err
            except ValueError as err:
                raise InvalidInput(
                    f"Not an artifact store URL: {self.url} ({err}).",
                    hint="Set ADAPTER_REGISTRY_ARTIFACTS to a folder or an fsspec URL "
                    "such as s3://bucket/prefix",
                ) from err
            self._root = str(root).rstrip("/")
        return self._fs

    def _key(self, *parts: str) -> str:
        _ = self.fs  # resolves the root
        return "/".join([self._root, *parts])

    def _final(self, sha256: str) -> str:
        self.path_for(sha256)  # validates the id
        return self._key(sha256[:2], sha256)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (FileNotFoundError, FileExistsError):
            raise
        except OSError as err:
            raise InvalidInput(
                f"The artifact store {self.url} failed while {what}: {err}.",
                hint="Check the store URL, its credentials (AWS_ACCESS_KEY_ID, …) and "
                "endpoint (AWS_ENDPOINT_URL), then retry.",
            ) from err

    def _mtime(self, key: str) -> float | None:
        try:
            return _stamp(self._call("reading a file's age", self.fs.info, key)) or None
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ the interface
    @property
    def root(self) -> Path:
        """The local folder that verified copies are read from (the cache)."""
        return self.cache.root

    def path_for(self, sha256: str) -> Path:
        """Return where the verified local copy of the artifact lives (it may not exist)."""
        return self.cache.path_for(sha256)

    def location(self, sha256: str) -> str:
        """Return the artifact's URL in the store."""
        self.path_for(sha256)
        return f"{self.url}/{sha256[:2]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        """Return True once the artifact's manifest is published (its bytes are not checked)."""
        key = f"{self._final(sha256)}/{MANIFEST}"
        self.fs.invalidate_cache(key)
        return bool(self._call("looking up an artifact", self.fs.exists, key))

    def touch(self, sha256: str) -> None:
        """Write the artifact's lease: ``gc`` counts its age from now."""
        self.path_for(sha256)
        stamp = json.dumps({"at": time.time()}).encode()
        self._call("writing a lease", self.fs.pipe_file, self._key("leases", sha256), stamp)

    def age(self, sha256: str) -> float:
        """Return the seconds since the artifact was published or last reused (its lease)."""
        try:
            raw = self.fs.cat_file(self._key("leases", sha256))
            return time.time() - float(json.loads(raw)["at"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        published = self._mtime(f"{self._final(sha256)}/{MANIFEST}")
        return time.time() - published if published is not None else float("inf")

    def staging(self, prefix: str = "stage") -> contextlib.AbstractContextManager[Path]:
        """A local staging folder that ``gc`` can see (in the cache's ``tmp``)."""
        return self.cache.staging(prefix)

    def put(self, source: Path) -> StoredArtifact:
        """Publish a folder under its content address and return its id.

        Storing the same content twice returns the existing artifact (its remote bytes are
        re-verified). The writer's local cache gets a copy, so reading it back costs no download.
        """
        entries, digest, size = source_listing(source)
        self.touch(digest)  # before the existence check: a gc from now on keeps it
        if self.exists(digest):
            self._fetch(digest, "artifact")
            return StoredArtifact(digest, self.path_for(digest), size)
        manifest = manifest_bytes(digest, entries)
        stage = self._key("tmp", f"{digest[:12]}-{uuid.uuid4().hex}")
        final = self._final(digest)
        fs = self.fs
        try:
            for entry in entries:
                rel = str(entry["path"])
                self._call("uploading", fs.put_file, str(source / rel), f"{stage}/{rel}")
            self._call("uploading", fs.pipe_file, f"{stage}/{MANIFEST}", manifest)
            for entry in entries:  # what landed is what was hashed
                rel = str(entry["path"])
                if self._remote_sha256(f"{stage}/{rel}") != entry["sha256"]:
                    raise IntegrityError(
                        f"Artifact source changed while being stored: {source}",
                        hint="Nothing was stored; run the command again.",
                    )
            for entry in entries:
                rel = str(entry["path"])
                self._call("publishing", fs.copy, f"{stage}/{rel}", f"{final}/{rel}")
            try:  # the manifest last, and never over an existing one
                fs.pipe_file(f"{final}/{MANIFEST}", manifest, mode="create")
            except OSError:
                if not self.exists(digest):  # a concurrent writer published the same bytes: fine
                    raise
        except OSError as err:
            raise InvalidInput(
                f"Cannot write to the artifact store {self.url}: {err}.",
                hint="Check the store URL, its credentials and free space, then retry.",
            ) from err
        finally:
            with contextlib.suppress(OSError):
                fs.rm(stage, recursive=True)
        self.cache.put(source)
        return StoredArtifact(digest, self.path_for(digest), size)

    def open(self, sha256: str, what: str = "artifact") -> Path:
        """Return the local folder of a verified artifact, downloading it on first use.

        Raises:
            NotFound: the artifact is not in the store.
            IntegrityError: any byte differs from what was stored.
        """
        if self.cache.exists(sha256):
            try:
                return self.cache.open(sha256, what)
            except IntegrityError:  # the local copy was damaged: the store has the truth
                self.cache.remove(sha256)
        self._fetch(sha256, what)
        return self.cache.open(sha256, what)

    def verify(self, sha256: str, what: str = "artifact") -> None:
        """Re-hash the artifact's bytes in the store and raise on any difference."""
        self._fetch(sha256, what)

    def _remote_sha256(self, key: str) -> str:
        h = hashlib.sha256()
        with self._call("reading", self.fs.open, key, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def _fetch(self, sha256: str, what: str) -> None:
        """Download the artifact, check every file against its manifest, and cache it."""
        final = self._final(sha256)
        manifest_key = f"{final}/{MANIFEST}"
        if not self.exists(sha256):
            raise NotFound(
                f"The files of {what} are missing: {self.location(sha256)}",
                hint="Run: adapter-registry verify",
            )
        try:
            recorded = json.loads(self._call("reading", self.fs.cat_file, manifest_key))["files"]
            paths = [str(e["path"]) for e in recorded]
        except (FileNotFoundError, ValueError, KeyError, TypeError) as err:
            raise IntegrityError(
                f"The manifest of {what} is missing or damaged: {self._url(manifest_key)}",
                hint="Run: adapter-registry verify",
            ) from err
        if tree_digest(recorded) != sha256:
            raise IntegrityError(
                f"The manifest of {what} does not match its id: {self._url(manifest_key)}",
                hint="Run: adapter-registry verify",
            )
        listed = {
            PurePosixPath(k).relative_to(final).as_posix()
            for k in self._call("listing", self.fs.find, final)
        }
        extra = sorted(listed - set(paths) - {MANIFEST})
        if extra:
            raise IntegrityError(
                f"Unexpected files in {what}: {', '.join(extra)} in {self.location(sha256)}",
                hint="Run: adapter-registry verify",
            )
        with self.cache.staging("fetch") as tmp:
            for entry, rel in zip(recorded, paths, strict=True):
                parts = PurePosixPath(rel).parts
                if rel.startswith("/") or ".." in parts or not parts:
                    raise IntegrityError(
                        f"The manifest of {what} names an unsafe path: {rel!r}",
                        hint="The stored artifact is damaged. Run: adapter-registry verify",
                    )
                key = f"{final}/{rel}"
                dst = tmp.joinpath(*parts)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._call("downloading", self.fs.get_file, key, str(dst))
                except FileNotFoundError as err:
                    raise IntegrityError(
                        f"A file of {what} is missing: {self._url(key)}",
                        hint="Run: adapter-registry verify",
                    ) from err
                h = hashlib.sha256()
                with open(dst, "rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        h.update(chunk)
                if h.hexdigest() != entry.get("sha256"):
                    raise IntegrityError(
                        f"A file of {what} does not match its sha256 (damaged or tampered): "
                        f"{self._url(key)}",
                        hint=_hint(what),
                    )
            if self.cache.exists(sha256):
                try:
                    self.cache.verify(sha256, what)
                    return
                except IntegrityError:
                    self.cache.remove(sha256)
            if self.cache.put(tmp).sha256 != sha256:  # pragma: no cover - checked file by file
                raise IntegrityError(
                    f"The files of {what} do not match its id.",
                    hint="The stored artifact is damaged. Run: adapter-registry verify",
                )

    def _url(self, key: str) -> str:
        _ = self.fs  # resolves the root
        rel = PurePosixPath(key).relative_to(self._root).as_posix()
        return f"{self.url}/{rel}"

    def _objects(self, under: str) -> dict[str, dict[str, Any]]:
        key = self._key(under) if under else self._key()
        self.fs.invalidate_cache()
        try:
            found = self._call("listing", self.fs.find, key, detail=True)
        except FileNotFoundError:
            return {}
        return dict(found)

    def all_ids(self) -> list[str]:
        """Return the id of every published artifact (one whose manifest exists)."""
        ids = []
        for key in self._objects(""):
            parts = PurePosixPath(key).relative_to(self._root).parts
            if len(parts) == 3 and parts[2] == MANIFEST and parts[1][:2] == parts[0]:
                with contextlib.suppress(InvalidInput):
                    self.path_for(parts[1])
                    ids.append(parts[1])
        return sorted(ids)

    def leftovers(self) -> list[Leftover]:
        """Staging keys and half-published folders (files without a manifest), with their
        ages, plus stale leases, the local cache's own leftovers and cached copies of artifacts
        the store no longer has (another home's ``gc`` removed them)."""
        now = time.time()
        groups: dict[str, float] = {}
        manifests = set()
        for key, info in self._objects("").items():
            parts = PurePosixPath(key).relative_to(self._root).parts
            if len(parts) < 2:
                continue
            if parts[0] == "tmp":
                group = f"tmp/{parts[1]}"
            elif parts[0] == "leases":
                group = f"leases/{parts[1]}"
            elif len(parts) >= 3 and len(parts[0]) == 2:
                group = f"{parts[0]}/{parts[1]}"
                if len(parts) == 3 and parts[2] == MANIFEST:
                    manifests.add(group)
            else:
                continue
            stamp = _stamp(info)
            groups[group] = max(groups.get(group, 0.0), stamp)
        published = {g.split("/")[1] for g in manifests}
        out = list(self.cache.leftovers())
        for sha in self.cache.all_ids():  # cached copies of what the store no longer has
            if sha not in published:
                with contextlib.suppress(FileNotFoundError):
                    out.append(Leftover(str(self.cache.path_for(sha)), self.cache.age(sha)))
        for group, stamp in sorted(groups.items()):
            kind, _, name = group.partition("/")
            if group in manifests or (kind == "leases" and name in published):
                continue
            out.append(Leftover(f"{self.url}/{group}", now - stamp if stamp else float("inf")))
        return out

    def remove_leftover(self, location: str) -> None:
        """Delete a leftover that :meth:`leftovers` listed."""
        if not location.startswith(self.url + "/"):
            path = Path(location)
            cached = path.parent.parent == self.cache.root and path.parent.name != "tmp"
            if cached and self.cache.exists(path.name):
                self.cache.remove(path.name)  # a cached copy of a removed artifact
            else:
                self.cache.remove_leftover(location)
            return
        rel = location[len(self.url) + 1 :]
        with contextlib.suppress(FileNotFoundError):
            self._call("removing", self.fs.rm, self._key(rel), recursive=True)

    def remove(self, sha256: str) -> int:
        """Delete an artifact (manifest first, so no reader trusts a half-deleted one), its
        lease and its cached copy; return the bytes freed in the store."""
        final = self._final(sha256)
        objects = self._objects(f"{sha256[:2]}/{sha256}")
        size = sum(int(info.get("size") or 0) for info in objects.values())
        for key in (f"{final}/{MANIFEST}", final, self._key("leases", sha256)):
            with contextlib.suppress(FileNotFoundError):
                self._call("removing", self.fs.rm, key, recursive=True)
        if self.cache.exists(sha256):
            self.cache.remove(sha256)
        return size


def _stamp(info: dict[str, Any]) -> float:
    for field in ("LastModified", "mtime", "created"):
        value = info.get(field)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0
