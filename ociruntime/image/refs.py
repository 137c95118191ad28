"""Image names: normalizing references and choosing one image of a source by name.

``NAME[:TAG]`` is compared with the names a source records (index annotations
``org.opencontainers.image.ref.name`` and ``io.containerd.image.name``; docker ``RepoTags``)
both literally and normalized (docker.io/library/ dropped, ``:latest`` added, a ``localhost/``
prefix optional, as podman names local images); ``sha256:<hex>`` selects a manifest or config
digest.  Without a name the source must hold exactly one image (the same image under several
names counts once).
"""

from __future__ import annotations

from ociruntime.image.blobs import fail
from ociruntime.image.digest import is_digest
from ociruntime.record import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def normalize_ref(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; ``docker.io/library/busybox:1`` -> ``busybox:1``."""
    name, at, dig = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        repo, tag = name[:colon], name[colon + 1:]
    else:
        repo, tag = name, ("" if at else "latest")
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    out = f"{repo}:{tag}" if tag else repo
    return f"{out}@{dig}" if at else out


def _name_keys(name: str) -> set[str]:
    keys = {name, normalize_ref(name)}
    for k in list(keys):
        if k.startswith("localhost/"):
            keys.add(k[len("localhost/"):])
    return keys


def _matches(ref: str, names: list[str], digests: list[str]) -> bool:
    if is_digest(ref):
        return ref in digests
    want = {ref, normalize_ref(ref)}
    return any(want & _name_keys(n) for n in names)


@dataclass(frozen=True)
class Candidate:
    """One image a source lists: its names, a key identifying the image, and how to load it."""

    names: list[str]
    key: str           # manifest digest (OCI) or config path (docker): same key = same image
    digests: list[str]  # what a sha256:<hex> selector may name
    entry: Any


def choose(source: str, cands: list[Candidate], ref: str | None) -> Candidate:
    if ref is not None:
        found = [c for c in cands if _matches(ref, c.names, c.digests)]
        what = f"no image named {ref!r}"
    else:
        found = cands
        what = "no image"
    distinct = {c.key: c for c in found}
    if len(distinct) == 1:
        return found[0]
    listing = ", ".join(sorted({n for c in cands for n in c.names} or {"(none named)"}))
    if not distinct:
        have = ", ".join(", ".join(c.names) or f"<unnamed {c.key}>" for c in cands) or "nothing"
        raise fail(source, f"{what}; it holds: {have}")
    if ref is None:
        raise fail(source, f"holds {len(distinct)} images, choose one by name: {listing}")
    raise fail(source, f"{ref!r} names {len(distinct)} different images: {listing}")
