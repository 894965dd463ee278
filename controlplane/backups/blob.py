"""Blob storage behind one interface: Azure Blob (block uploads) or a local folder.

Uploads are atomic: Azure stages one block per chunk and commits the block list only at
the end, so an interrupted upload leaves no committed blob (uncommitted blocks expire);
the local backend writes ``NAME.partial`` and renames it on commit.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controlplane.backups.config import BlobConfig

log = logging.getLogger(__name__)


class BlobError(Exception):
    """A storage operation failed; the message names the blob and the cause."""


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    modified: datetime | None = None
    """When the blob was last written (committed), as the storage reports it."""


class BlobWriter(ABC):
    """Append-only upload; nothing is visible to readers until commit()."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...


class BlobStore(ABC):
    @abstractmethod
    def writer(self, name: str) -> BlobWriter: ...

    @abstractmethod
    def chunks(self, name: str) -> Iterator[bytes]: ...

    @abstractmethod
    def put_bytes(self, name: str, data: bytes) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[BlobInfo]: ...

    def get_bytes(self, name: str) -> bytes:
        return b"".join(self.chunks(name))

    def reader(self, name: str) -> ChunkReader:
        return ChunkReader(self.chunks(name))

    def describe(self) -> str:
        return type(self).__name__


class ChunkReader(io.RawIOBase):
    """A readable file object over an iterator of byte chunks (what pyrage reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not len(self._buf):
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]  # a view: no copy of the rest of the chunk
        return n


# -- local folder ---------------------------------------------------------------------------


class LocalBlobStore(BlobStore):
    def __init__(self, root: str, chunk_size: int = 1024 * 1024) -> None:
        self.root = os.path.abspath(root)
        self.chunk_size = chunk_size
        os.makedirs(self.root, exist_ok=True)

    def _path(self, name: str) -> str:
        path = os.path.abspath(os.path.join(self.root, name))
        if not path.startswith(self.root + os.sep):
            raise BlobError(f"blob name {name!r} escapes the backup folder")
        return path

    def writer(self, name: str) -> BlobWriter:
        return _LocalWriter(self._path(name))

    def chunks(self, name: str) -> Iterator[bytes]:
        try:
            f = open(self._path(name), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise BlobError(f"blob {name} not found in {self.root}") from None
        return _file_chunks(f, self.chunk_size)

    def put_bytes(self, name: str, data: bytes) -> None:
        w = self.writer(name)
        w.write(data)
        w.commit()

    def delete(self, name: str) -> bool:
        try:
            os.remove(self._path(name))
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str = "") -> list[BlobInfo]:
        out: list[BlobInfo] = []
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                full = os.path.join(dirpath, f)
                name = os.path.relpath(full, self.root).replace(os.sep, "/")
                if name.startswith(prefix) and not name.endswith(".partial"):
                    st = os.stat(full)
                    out.append(BlobInfo(name, st.st_size,
                                        datetime.fromtimestamp(st.st_mtime, UTC)))
        return sorted(out, key=lambda b: b.name)

    def describe(self) -> str:
        return f"folder {self.root}"


def _file_chunks(f: io.BufferedReader, size: int) -> Iterator[bytes]:
    with f:
        while chunk := f.read(size):
            yield chunk


class _LocalWriter(BlobWriter):
    def __init__(self, path: str) -> None:
        self.path = path
        self.partial = path + ".partial"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._f: io.BufferedWriter | None = open(self.partial, "wb")  # noqa: SIM115

    def write(self, data: bytes) -> None:
        assert self._f is not None, "write after commit/abort"
        try:
            self._f.write(data)
        except OSError as exc:
            raise BlobError(f"writing {self.partial} failed: {exc.strerror}") from None

    def commit(self) -> None:
        assert self._f is not None
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.partial)


# -- Azure Blob -----------------------------------------------------------------------------


class AzureBlobStore(BlobStore):
    def __init__(self, cfg: BlobConfig) -> None:
        from azure.storage.blob import BlobServiceClient, ExponentialRetry

        # Short backoff: a dead endpoint should fail a backup in seconds, not minutes.
        retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2)
        # Downloads come in block-sized ranges (the SDK's first range is 32 MiB by default).
        kwargs: dict[str, Any] = {"retry_policy": retry, "connection_timeout": 10,
                                  "read_timeout": 60, "max_single_get_size": cfg.block_size,
                                  "max_chunk_get_size": cfg.block_size}
        if cfg.connection_string is not None:
            service = BlobServiceClient.from_connection_string(
                cfg.connection_string.get_secret_value(), **kwargs)
        else:
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(cfg.account_url or "",
                                        credential=DefaultAzureCredential(), **kwargs)
        self.block_size = cfg.block_size
        self.container_name = cfg.container
        self.container = service.get_container_client(cfg.container)
        self._ensured = False

    def _ensure_container(self) -> None:
        if self._ensured:
            return
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container.create_container()
        except ResourceExistsError:
            pass
        except Exception as exc:
            raise BlobError(_azure_message(f"container {self.container_name}", exc)) from None
        self._ensured = True

    def writer(self, name: str) -> BlobWriter:
        self._ensure_container()
        return _AzureWriter(self.container.get_blob_client(name), self.block_size)

    def chunks(self, name: str) -> Iterator[bytes]:
        try:
            stream = self.container.get_blob_client(name).download_blob(max_concurrency=1)
        except Exception as exc:
            raise BlobError(_azure_message(f"download of {name}", exc)) from None
        return _guarded(stream.chunks(), name)

    def put_bytes(self, name: str, data: bytes) -> None:
        self._ensure_container()
        try:
            self.container.get_blob_client(name).upload_blob(data, overwrite=True)
        except Exception as exc:
            raise BlobError(_azure_message(f"upload of {name}", exc)) from None

    def delete(self, name: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container.get_blob_client(name).delete_blob()
            return True
        except ResourceNotFoundError:
            return False
        except Exception as exc:
            raise BlobError(_azure_message(f"delete of {name}", exc)) from None

    def list(self, prefix: str = "") -> list[BlobInfo]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [BlobInfo(b.name, int(b.size or 0), b.last_modified)
                    for b in self.container.list_blobs(name_starts_with=prefix or None)]
        except ResourceNotFoundError:
            return []  # no container yet: nothing was ever uploaded
        except Exception as exc:
            raise BlobError(_azure_message("listing blobs", exc)) from None

    def describe(self) -> str:
        return f"azure container {self.container_name}"


def _guarded(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    try:
        yield from chunks
    except Exception as exc:
        raise BlobError(_azure_message(f"download of {name}", exc)) from None


def _azure_message(what: str, exc: Exception) -> str:
    from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError

    if isinstance(exc, ResourceNotFoundError):
        return f"{what} failed: not found"
    if isinstance(exc, ServiceRequestError):
        return f"{what} failed: blob endpoint unreachable ({type(exc).__name__})"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{what} failed: {first}"


class _AzureWriter(BlobWriter):
    """Stages blocks from a background thread so uploading overlaps dumping.

    At most ``_IN_FLIGHT`` blocks wait in the queue, which bounds memory; the first upload
    error is re-raised to the producer on its next write or at commit.
    """

    _IN_FLIGHT = 2

    def __init__(self, client: Any, block_size: int) -> None:
        self.client = client
        self.block_size = block_size
        self._buf = bytearray()
        self._blocks: list[Any] = []
        self._queued = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=self._IN_FLIGHT)
        self._error: BlobError | None = None
        self._thread = threading.Thread(target=self._uploader, name="blob-upload", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self._raise_error()
        self._buf += data
        while len(self._buf) >= self.block_size:
            self._put(bytes(self._buf[: self.block_size]))
            self._queued += 1
            del self._buf[: self.block_size]

    def _put(self, block: bytes | None) -> None:
        while True:
            self._raise_error()
            try:
                self._queue.put(block, timeout=0.5)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _uploader(self) -> None:
        while True:
            block = self._queue.get()
            if block is None:
                return
            if self._error is None:
                try:
                    self._stage(block)
                except BlobError as exc:
                    self._error = exc

    def _stage(self, data: bytes) -> None:
        from azure.storage.blob import BlobBlock

        # Equal-length ids are required; the index keeps them unique and ordered.
        block_id = base64.b64encode(f"{len(self._blocks):010d}".encode()).decode()
        try:
            self.client.stage_block(block_id, data, length=len(data))
        except Exception as exc:
            raise BlobError(_azure_message(f"upload of {self.client.blob_name} "
                                           f"(block {len(self._blocks)})", exc)) from None
        self._blocks.append(BlobBlock(block_id=block_id))

    def _drain(self) -> None:
        self._put(None)
        self._thread.join()

    def commit(self) -> None:
        if self._buf or not self._queued:
            self._put(bytes(self._buf))
            self._queued += 1
            self._buf.clear()
        self._drain()
        self._raise_error()
        try:
            self.client.commit_block_list(self._blocks)
        except Exception as exc:
            raise BlobError(_azure_message(f"commit of {self.client.blob_name}", exc)) from None

    def abort(self) -> None:
        # Staged but uncommitted blocks are invisible and expire on their own (7 days).
        self._buf.clear()
        if self._thread.is_alive():
            if self._error is None:
                self._error = BlobError("upload aborted")
            with contextlib.suppress(queue.Empty):  # drop what was never sent
                while True:
                    self._queue.get_nowait()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(60)


def open_blob_store(cfg: BlobConfig) -> BlobStore:
    if cfg.backend == "azure":
        return AzureBlobStore(cfg)
    return LocalBlobStore(cfg.path)
