"""Content digests: ``sha256:<64 lower-case hex>``, streaming hashes, DiffIDs and ChainIDs.

Only sha256 is accepted.  The image spec also registers sha512 (and blake3 is proposed), but
every image docker, podman and buildkit produce uses sha256; another algorithm is refused with a
message naming it rather than half-supported.  Hex must be lower case, as the spec's grammar
(``[a-f0-9]{64}`` for sha256) says: an upper-case digest names no blob in a layout.

ChainID (image spec, config.md): ChainID(L0) = DiffID(L0) and
ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)), over the two digests' text forms.
"""

from __future__ import annotations

import hashlib
import os

from ociruntime.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import BinaryIO

ALGORITHM = "sha256"
HEX_LEN = 64
_HEX = frozenset("0123456789abcdef")
CHUNK = 1 << 20


def parse_digest(text: object, what: str = "digest") -> str:
    """Validate ``sha256:<hex>`` and return the hex part; anything else is an ImageError.

    ``what`` names the value in the message ("layer 2 digest", "config digest", ...).
    """
    if not isinstance(text, str):
        raise ImageError(f"{what}: expected a digest string, got {type(text).__name__}")
    algo, sep, hexpart = text.partition(":")
    if not sep:
        raise ImageError(f"{what} {text!r}: not a digest (expected sha256:<64 hex digits>)")
    if algo != ALGORITHM:
        raise ImageError(f"{what} {text!r}: unsupported digest algorithm {algo!r} (only sha256 is supported)")
    if len(hexpart) != HEX_LEN:
        raise ImageError(f"{what} {text!r}: a sha256 digest has {HEX_LEN} hex digits, not {len(hexpart)}")
    if not _HEX.issuperset(hexpart):
        raise ImageError(f"{what} {text!r}: not lower-case hex")
    return hexpart


def validate_digest(text: object, what: str = "digest") -> str:
    """``parse_digest`` returning the whole digest (``sha256:<hex>``)."""
    return f"{ALGORITHM}:{parse_digest(text, what)}"


def is_digest(text: object) -> bool:
    try:
        parse_digest(text)
    except ImageError:
        return False
    return True


def format_digest(hexpart: str) -> str:
    return f"{ALGORITHM}:{hexpart}"


def sha256_bytes(data: bytes) -> str:
    return format_digest(hashlib.sha256(data).hexdigest())


def sha256_stream(f: BinaryIO, chunk: int = CHUNK) -> tuple[str, int]:
    """Digest and byte count of everything left in the binary stream ``f``."""
    h = hashlib.sha256()
    n = 0
    while data := f.read(chunk):
        h.update(data)
        n += len(data)
    return format_digest(h.hexdigest()), n


def sha256_file(path: str | os.PathLike[str], chunk: int = CHUNK) -> str:
    """Digest of a file's content, read in chunks (never whole into memory)."""
    with open(path, "rb") as f:
        return sha256_stream(f, chunk)[0]


def chain_id(parent: str | None, diff_id: str) -> str:
    """The ChainID of a layer with DiffID ``diff_id`` on top of the chain ``parent`` (None: bottom)."""
    validate_digest(diff_id, "diff_id")
    if parent is None:
        return diff_id
    validate_digest(parent, "chain id")
    return sha256_bytes(f"{parent} {diff_id}".encode())


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """ChainIDs of a layer stack, bottom first: one per DiffID."""
    out: list[str] = []
    parent: str | None = None
    for d in diff_ids:
        parent = chain_id(parent, d)
        out.append(parent)
    return out
