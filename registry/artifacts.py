"""Content-addressed, immutable artifact folders.

An artifact is a folder of files (adapter config, safetensors weights, head, manifest). Its id is
the sha256 of a canonical listing of ``relative path``, size and per-file sha256, so identical
content always lands in the same place: ``<root>/<sha[:2]>/<sha>/``. Writes go to a temporary
folder, every file is fsynced, and one ``rename`` publishes the whole folder, so a crash leaves
either nothing or a complete artifact (plus, at worst, a temporary folder that ``gc`` removes).
Published folders are made read-only, and every load re-hashes the bytes.

Every temporary folder (a write's, and the staging folders that ``train``, ``fuse`` and ``pull``
build their files in: :meth:`ArtifactStore.staging`) lives under ``<root>/tmp`` and is held by an
``flock`` while its process is alive, so ``gc`` finds what a SIGKILL left behind and never takes
a folder that a live process still writes. Reusing a published folder refreshes its age, so the
grace period of ``gc`` also covers an old orphan that a new write is about to reference.

This is the local backend; :mod:`registry.artifact_store` holds the fsspec one (S3 and others)
and picks between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .errors import IntegrityError, InvalidInput, NotFound

MANIFEST = ".artifact.json"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _listing(folder: Path) -> list[dict[str, object]]:
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        entries.append({"path": rel, "size": path.stat().st_size, "sha256": file_sha256(path)})
    return entries


def tree_digest(entries: list[dict[str, object]]) -> str:
    """Return the artifact id for a file listing."""
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def source_listing(source: Path) -> tuple[list[dict[str, object]], str, int]:
    """Return the file listing, artifact id and total size of a folder to publish.

    Raises:
        InvalidInput: ``source`` is not a folder, or has no files.
    """
    if not source.is_dir():
        raise InvalidInput(
            f"Artifact source is not a folder: {source}",
            hint="Give the folder a save wrote (one adapter or fusion).",
        )
    entries = _listing(source)
    if not entries:
        raise InvalidInput(
            f"Artifact source folder is empty: {source}",
            hint="Give the folder a save wrote (one adapter or fusion); it has no files.",
        )
    size = sum(cast(int, e["size"]) for e in entries)
    return entries, tree_digest(entries), size


@dataclass(frozen=True)
class StoredArtifact:
    """A published artifact: its id, folder and total size in bytes."""

    sha256: str
    path: Path
    size: int


@dataclass(frozen=True)
class Leftover:
    """What an interrupted write left behind: where it is and its age in seconds."""

    location: str
    age: float


def manifest_bytes(digest: str, entries: list[dict[str, object]]) -> bytes:
    """Return the bytes of an artifact's manifest (the same in every backend)."""
    return json.dumps({"sha256": digest, "files": entries}, indent=1, sort_keys=True).encode()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactStore:
    """Immutable folders under ``root``, addressed by sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        """Return where the artifact with this id lives (it may not exist)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInput(
                f"Not an artifact id: {sha256!r}",
                hint="An artifact id is 64 hex characters. Run: adapter-registry verify --json",
            )
        return self.root / sha256[:2] / sha256

    def put(self, source: Path) -> StoredArtifact:
        """Copy a folder into the store atomically and return its id.

        Storing the same content twice returns the existing artifact.
        """
        entries, digest, size = source_listing(source)
        final = self.path_for(digest)
        if final.exists():
            self.touch(digest)  # reused: gc's grace period starts again
            self.verify(digest)
            return StoredArtifact(digest, final, size)
        with self._staging_folder(f"{digest[:12]}-{uuid.uuid4().hex}") as tmp:
            try:
                for entry in entries:
                    rel = str(entry["path"])
                    dst = tmp / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    with open(source / rel, "rb") as src_fh, open(dst, "wb") as dst_fh:
                        shutil.copyfileobj(src_fh, dst_fh, _CHUNK)
                        dst_fh.flush()
                        os.fsync(dst_fh.fileno())
                with open(tmp / MANIFEST, "wb") as fh:
                    fh.write(manifest_bytes(digest, entries))
                    fh.flush()
                    os.fsync(fh.fileno())
                if file_listing_digest(tmp) != digest:  # the source changed under us
                    raise IntegrityError(
                        f"Artifact source changed while being stored: {source}",
                        hint="Nothing was stored; run the command again.",
                    )
                _make_read_only(tmp)
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(tmp, final)
                except OSError:
                    if not final.exists():  # a concurrent writer published the same bytes: fine
                        raise
                _fsync_dir(final.parent)
            except OSError as err:  # e.g. the disk filled up while copying
                raise _not_writable(self.root, err) from err
        return StoredArtifact(digest, final, size)

    @contextlib.contextmanager
    def staging(self, prefix: str = "stage") -> Iterator[Path]:
        """Yield a fresh, empty folder under ``<root>/tmp`` to build files in, removed after.

        Unlike the system's temp dir, ``gc`` sees it: a SIGKILL leaves it where ``gc`` removes
        it, and while this process lives its lock keeps ``gc`` away.
        """
        with self._staging_folder(f"{prefix}-{uuid.uuid4().hex}") as folder:
            yield folder

    @contextlib.contextmanager
    def _staging_folder(self, name: str) -> Iterator[Path]:
        tmp = self.root / "tmp" / name
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            fd = os.open(tmp, os.O_RDONLY)
        except OSError as err:  # a read-only home, or no permission
            raise _not_writable(self.root, err) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel when the process dies
            yield tmp
        finally:
            try:
                if tmp.exists():
                    _remove_tree(tmp)
            finally:
                os.close(fd)

    def exists(self, sha256: str) -> bool:
        """Return True when the artifact is published here (its bytes are not checked)."""
        return self.path_for(sha256).is_dir()

    def location(self, sha256: str) -> str:
        """Return where the artifact lives, for display."""
        return str(self.path_for(sha256))

    def touch(self, sha256: str) -> None:
        """Restart the artifact's age (see :meth:`age`); a missing one is ignored."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path_for(sha256))

    def age(self, sha256: str) -> float:
        """Return the seconds since the artifact was published or last reused (infinite once
        it is gone: another ``gc`` may remove it while this one looks, as on the remote store)."""
        try:
            return time.time() - self.path_for(sha256).stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def open(self, sha256: str, what: str = "artifact") -> Path:
        """Return the folder of a verified artifact.

        Raises:
            NotFound: the folder is missing.
            IntegrityError: any byte differs from what was stored.
        """
        self.verify(sha256, what)
        return self.path_for(sha256)

    def verify(self, sha256: str, what: str = "artifact") -> None:
        """Re-hash an artifact and raise on any difference, naming the file."""
        folder = self.path_for(sha256)
        if not folder.is_dir():
            raise NotFound(
                f"The files of {what} are missing: {folder}",
                hint="Run: adapter-registry verify",
            )
        manifest_path = folder / MANIFEST
        try:
            recorded = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError) as err:
            raise IntegrityError(
                f"The manifest of {what} is missing or damaged: {manifest_path}",
                hint="Run: adapter-registry verify",
            ) from err
        actual = {str(e["path"]): e for e in _listing(folder)}
        for entry in recorded:
            rel = entry["path"]
            got = actual.pop(rel, None)
            if got is None:
                raise IntegrityError(
                    f"A file of {what} is missing: {folder / rel}",
                    hint="Run: adapter-registry verify",
                )
            if got["sha256"] != entry["sha256"]:
                raise IntegrityError(
                    f"A file of {what} does not match its sha256 (damaged or tampered): "
                    f"{folder / rel}",
                    hint="Run: adapter-registry verify (then re-train or re-pull it)",
                )
        if actual:
            extra = ", ".join(sorted(actual))
            raise IntegrityError(
                f"Unexpected files in {what}: {extra} in {folder}",
                hint="Run: adapter-registry verify",
            )
        if tree_digest(recorded) != sha256:
            raise IntegrityError(
                f"The manifest of {what} does not match its id: {manifest_path}",
                hint="Run: adapter-registry verify",
            )

    def all_ids(self) -> list[str]:
        """Return the id of every published artifact folder on disk."""
        if not self.root.is_dir():
            return []
        ids: list[str] = []
        for prefix in self.root.iterdir():
            if len(prefix.name) != 2 or not prefix.is_dir():
                continue
            ids.extend(p.name for p in prefix.iterdir() if p.is_dir())
        return sorted(ids)

    def temp_leftovers(self) -> list[Path]:
        """Return temporary folders left behind by interrupted writes.

        A folder whose writer is still alive (it holds the folder's lock) is not a leftover.
        """
        tmp = self.root / "tmp"
        return sorted(p for p in tmp.iterdir() if not _in_use(p)) if tmp.is_dir() else []

    def leftovers(self) -> list[Leftover]:
        """Return what interrupted writes left behind, with ages (for ``gc`` and ``verify``)."""
        now = time.time()
        out = []
        for path in self.temp_leftovers():
            with contextlib.suppress(FileNotFoundError):
                out.append(Leftover(str(path), now - path.lstat().st_mtime))
        return out

    def remove_leftover(self, location: str) -> None:
        """Delete a leftover that :meth:`leftovers` listed."""
        path = Path(location)
        if path.parent != self.root / "tmp":
            raise InvalidInput(
                f"Not a leftover of this artifact store: {location}",
                hint="List the leftovers with: adapter-registry gc --dry-run",
            )
        _remove_tree(path)

    def remove(self, sha256: str) -> int:
        """Delete an artifact folder and return the bytes freed."""
        folder = self.path_for(sha256)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        _remove_tree(folder)
        return size

    def remove_path(self, path: Path) -> None:
        """Delete a temporary leftover folder."""
        _remove_tree(path)


def _not_writable(root: Path, err: OSError) -> InvalidInput:
    return InvalidInput(
        f"Cannot write to the artifact folder {root}: {err.strerror or err}.",
        hint="Check the permissions and free space of the registry home (ADAPTER_REGISTRY_HOME).",
    )


def file_listing_digest(folder: Path) -> str:
    """Return the artifact id that a folder's current files would have."""
    return tree_digest(_listing(folder))


def _in_use(path: Path) -> bool:
    """Return True when a live process holds the lock of a temporary folder."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def _make_read_only(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)


def _remove_tree(folder: Path) -> None:
    if not folder.exists():
        return
    # Read-only folders must be made writable before their entries can be unlinked. Another
    # process (a second gc) may be removing the same folder: what it took first is fine.
    with contextlib.suppress(FileNotFoundError):
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir():
                path.chmod(stat.S_IRWXU)
    shutil.rmtree(folder, onerror=_gone_is_fine)


def _gone_is_fine(_func: object, _path: str, exc_info: Any) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]
