"""The layer store: every layer extracted once, keyed by its ChainID, shared by every bundle.

Layout (``root`` defaults to /var/lib/ociruntime/layers; every path below is relative to it)::

    <chain hex>/                a published layer: renamed into place whole, never changed after
        diff/                   its content, in overlayfs lower-layer form (layers.py)
        layer.json              {"version", "chain_id", "diff_id", "digest", "media_type",
                                 "compressed_size", "size", "entries", "warnings"}
        whiteouts.json          [{"path", "kind": "file"|"opaque", "applied"}]: the layer's
                                deletions, for a copy-mode flattening without overlayfs
    .tmp/<chain hex>.<pid>.<n>  an extraction in progress, or the leftovers of a killed one
    .locks/<chain hex>          flock(2) target serializing the extractors of one ChainID

The directory is named by the ChainID, not the DiffID: the same layer tar on a different base
is a different overlay lower (as in docker's layerdb).  Only sha256 exists, so the name is the
hex alone.

Crash safety: a layer is extracted into ``.tmp``, its metadata written beside it, the
filesystem synced, and the directory renamed into place; a reader that sees ``<chain hex>/``
with a valid layer.json sees a complete layer.  Extractors of one ChainID take its lock; the
holder removes that ChainID's ``.tmp`` leftovers (no one else can be writing them) and a damaged
``<chain hex>/`` (no valid layer.json: outside damage) before extracting.  ``clean_temp`` removes
every leftover whose lock is free.  Lock files are never removed (removing one would let two
extractors lock different inodes).

Removal: layers are never removed yet.  Each bundle records its ChainIDs in its bundle.json
(bundle.py); a gc would delete a layer no registered bundle names, under that layer's lock.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
from pathlib import Path

from ociruntime.errors import ImageError, describe_oserror, suppress
from ociruntime.image.digest import parse_digest, validate_digest
from ociruntime.image.layers import Limits, apply_layer, remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ociruntime.image.source import Image, Layer

DEFAULT_STORE = "/var/lib/ociruntime/layers"
META_VERSION = 1
TMP = ".tmp"
LOCKS = ".locks"


def _syncfs(fd: int) -> None:
    """syncfs(2): the extracted files reach the disk before the rename publishes them."""
    from ociruntime.linux.libc import LIBC

    if LIBC.syncfs(ctypes.c_int(fd)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


class _Lock:
    """flock(LOCK_EX) on ``.locks/<hex>`` for a ``with`` block (or LOCK_NB: ``acquired``)."""

    __slots__ = ("acquired", "blocking", "fd", "path")

    def __init__(self, path: Path, blocking: bool = True) -> None:
        self.path = path
        self.blocking = blocking
        self.fd = -1
        self.acquired = False

    def __enter__(self) -> _Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
            self.acquired = True
        except BlockingIOError:
            pass
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock


class LayerStore:
    def __init__(self, root: str | os.PathLike[str] = DEFAULT_STORE, *, limits: Limits | None = None,
                 privileged: bool | None = None, durable: bool = True) -> None:
        self.root = Path(root)
        self.limits = limits
        self.privileged = privileged
        self.durable = durable
        self._seq = 0

    # -- paths --

    def layer_dir(self, chain_id: str) -> Path:
        return self.root / parse_digest(chain_id, "chain id")

    def diff_dir(self, chain_id: str) -> Path:
        return self.layer_dir(chain_id) / "diff"

    def _prepare(self) -> None:
        try:
            for d in (self.root, self.root / TMP, self.root / LOCKS):
                os.makedirs(d, 0o700, exist_ok=True)
        except OSError as e:
            raise ImageError(describe_oserror(e, "layer store")) from None

    # -- reading --

    def metadata(self, chain_id: str) -> dict[str, Any] | None:
        """The layer.json of a complete layer, or None (absent, incomplete or damaged)."""
        d = self.layer_dir(chain_id)
        try:
            with open(d / "layer.json", "rb") as f:
                meta = json.loads(f.read(1 << 20))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("chain_id") != validate_digest(chain_id, "chain id"):
            return None
        if not (d / "diff").is_dir() or (d / "diff").is_symlink():
            return None
        return meta

    def whiteouts(self, chain_id: str) -> list[dict[str, Any]]:
        with open(self.layer_dir(chain_id) / "whiteouts.json", "rb") as f:
            return json.loads(f.read())

    def has(self, chain_id: str) -> bool:
        return self.metadata(chain_id) is not None

    # -- extracting --

    def ensure_layers(self, image: Image) -> list[Path]:
        """Every layer of ``image`` in the store (extracting those missing); their diff dirs,
        bottom layer first (overlayfs's ``lowerdir=`` wants them top first: reverse)."""
        return [self.ensure_layer(image, layer) for layer in image.layers]

    def ensure_layer(self, image: Image, layer: Layer) -> Path:
        hexid = parse_digest(layer.chain_id, "chain id")
        final = self.root / hexid
        if self._complete(layer):
            return final / "diff"
        self._prepare()
        try:
            with _Lock(self.root / LOCKS / hexid):
                if self._complete(layer):  # another extractor finished while we waited
                    return final / "diff"
                self._remove_leftovers(hexid)
                if os.path.lexists(final):  # damaged: move it out of the way, then remove it
                    self._seq += 1
                    aside = self.root / TMP / f"{hexid}.{os.getpid()}.old{self._seq}"
                    os.rename(final, aside)
                    remove_tree(aside)
                # (users: a bundle would be registered here, under the lock)
                self._extract(image, layer, hexid)
        except OSError as e:
            raise ImageError(describe_oserror(e, "layer store")) from None
        return final / "diff"

    def _complete(self, layer: Layer) -> bool:
        meta = self.metadata(layer.chain_id)
        return meta is not None and meta.get("diff_id") == layer.diff_id

    def _extract(self, image: Image, layer: Layer, hexid: str) -> None:
        self._seq += 1
        tmp = self.root / TMP / f"{hexid}.{os.getpid()}.{self._seq}"
        try:
            os.mkdir(tmp, 0o700)
            what = f"image {image.source}: {layer.describe()}"
            with image.open_layer(layer) as blob:
                result = apply_layer(blob, tmp / "diff", compression=layer.compression, diff_id=layer.diff_id,
                                     limits=self.limits, privileged=self.privileged, what=what)
            meta = {
                "version": META_VERSION,
                "chain_id": layer.chain_id,
                "diff_id": result.diff_id,
                "digest": layer.digest,
                "media_type": layer.media_type,
                "compressed_size": layer.size,
                "size": result.size,
                "entries": result.entries,
                "warnings": result.warnings,
            }
            _write(tmp / "whiteouts.json", [w.to_json() for w in result.whiteouts])
            _write(tmp / "layer.json", meta)
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                if self.durable:
                    _syncfs(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.root / hexid)
        except OSError as e:
            remove_tree(tmp)
            raise ImageError(describe_oserror(e, "layer store")) from None
        except BaseException:
            remove_tree(tmp)
            raise
        if self.durable:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- leftovers --

    def _remove_leftovers(self, hexid: str) -> None:
        """Under ``hexid``'s lock: its temp dirs are a killed extractor's."""
        with suppress(FileNotFoundError):
            for name in os.listdir(self.root / TMP):
                if name.split(".", 1)[0] == hexid:
                    remove_tree(self.root / TMP / name)

    def clean_temp(self) -> int:
        """Remove every leftover temp dir no extractor holds; returns how many went."""
        removed = 0
        try:
            names = os.listdir(self.root / TMP)
        except FileNotFoundError:
            return 0
        for hexid in sorted({n.split(".", 1)[0] for n in names}):
            try:
                parse_digest(f"sha256:{hexid}")
            except ImageError:
                continue  # not ours
            with _Lock(self.root / LOCKS / hexid, blocking=False) as lock:
                if lock.acquired:
                    before = len(os.listdir(self.root / TMP))
                    self._remove_leftovers(hexid)
                    removed += before - len(os.listdir(self.root / TMP))
        return removed


def _write(path: Path, doc: object) -> None:
    data = json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
