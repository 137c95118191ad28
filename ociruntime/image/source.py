"""Open an image: an OCI image layout directory, an ``oci-archive`` tar, or a ``docker save`` /
``podman save`` tar; pick one image by name; return its config and layer list, verified.

Formats (told apart by their files, not by the path's name):

* **OCI image layout** (image-layout.md): ``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``;
  a directory, or a tar of one (``oci-archive``, podman/skopeo/buildah).
* **docker save** (docker's "Image tar" v1.2, also ``podman save`` = docker-archive):
  ``manifest.json``, a list of ``{"Config", "RepoTags", "Layers"}`` with paths inside the tar.
  Old docker and podman name layers ``<id>/layer.tar`` or ``<hex>.tar``; docker 25+ writes an
  OCI layout too and points ``manifest.json`` into ``blobs/sha256``.  When ``manifest.json``
  exists it is what we read (docker's own index of the tar; every docker and podman writes it).

Trust: everything read is checked before use.  A JSON blob (manifest, nested index, config) is
read whole (bounded by MAX_JSON), its size and sha256 compared with the descriptor, then parsed.
A layer is not read here: ``Image.open_layer`` returns a ``VerifiedReader`` that hashes as the
layer is streamed into the store and raises at the end of the stream on a wrong size or digest,
before the extracted layer is published (layers.py / store.py).  A layer's DiffID (sha256 of the
uncompressed tar, from the config) is checked by the extractor in the same pass.  Only the top
``index.json`` / ``manifest.json`` is not content-addressed: it is the entry point we are given.

How the bytes are reached (a directory, or tar members read in place) is blobs.py; how a name
selects an image is refs.py.  An image index (multi-arch) is followed to the manifest for
``platform`` (default: linux and the host's architecture).
"""

from __future__ import annotations

import hashlib
import json
import os

from ociruntime.errors import ImageError
from ociruntime.image.blobs import (
    Files,
    VerifiedReader,
    clean_relpath,
    fail,
    open_files,
    parse_json,
    read_all,
    read_blob_json,
    read_plain_json,
)
from ociruntime.image.digest import chain_ids as compute_chain_ids
from ociruntime.image.digest import format_digest, is_digest, parse_digest, validate_digest
from ociruntime.image.refs import Candidate, choose
from ociruntime.record import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    _LayerInfo = tuple[str, str | None, int, str]  # media type, digest (or None), size, compression

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG})
# layer media type -> compression
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    MEDIA_DOCKER_LAYER: "none",
    MEDIA_DOCKER_LAYER_GZIP: "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
SUPPORTED_COMPRESSION = frozenset({"none", "gzip"})

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

MAX_INDEX_DEPTH = 4         # index -> index -> ... -> manifest

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
           "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    machine = os.uname().machine
    return Platform("linux", _GOARCH.get(machine, machine))


@dataclass(frozen=True)
class Layer:
    """One layer of an image, bottom first.  ``digest`` is None only for an old docker-save layer
    (``<id>/layer.tar``) whose name carries no digest: its DiffID alone checks it."""

    index: int
    media_type: str
    digest: str | None
    size: int
    compression: str  # "none" | "gzip"
    diff_id: str
    chain_id: str

    def describe(self) -> str:
        return f"layer {self.index} ({self.digest or self.diff_id})"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str]
    platform: Platform | None


def _descriptor(obj: object, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ImageError(f"{what}: expected a descriptor object")
    media = obj.get("mediaType")
    if not isinstance(media, str):
        raise ImageError(f"{what}: descriptor has no mediaType")
    digest = validate_digest(obj.get("digest"), f"{what} digest")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageError(f"{what}: descriptor size {size!r} is not a non-negative integer")
    ann = obj.get("annotations") or {}
    if not isinstance(ann, dict):
        raise ImageError(f"{what}: annotations must be an object")
    plat = obj.get("platform")
    platform = None
    if isinstance(plat, dict):
        platform = Platform(str(plat.get("os", "")), str(plat.get("architecture", "")),
                            str(plat.get("variant", "") or ""))
    return Descriptor(media, digest, size, {str(k): str(v) for k, v in ann.items()}, platform)


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{parse_digest(digest)}"

# --- the image --------------------------------------------------------------------------------

class Image:
    """An opened image: verified config and layer list; ``open_layer`` streams a layer's blob.

    Keeps the source open (an archive is read in place): use as a context manager, or ``close``.
    """

    def __init__(self, *, source: str, fmt: str, files: Files, name: str | None, names: list[str],
                 manifest_digest: str | None, config_digest: str, config: dict[str, Any],
                 layers: tuple[Layer, ...], layer_paths: tuple[str, ...]) -> None:
        self.source = source
        self.format = fmt  # "oci" | "docker"
        self.name = name
        self.names = names
        self.manifest_digest = manifest_digest
        self.config_digest = config_digest
        self.config = config
        self.layers = layers
        self._files = files
        self._layer_paths = layer_paths

    @property
    def diff_ids(self) -> list[str]:
        return [la.diff_id for la in self.layers]

    @property
    def chain_ids(self) -> list[str]:
        return [la.chain_id for la in self.layers]

    @property
    def platform(self) -> Platform:
        return Platform(str(self.config.get("os", "")), str(self.config.get("architecture", "")),
                        str(self.config.get("variant", "") or ""))

    def open_layer(self, layer: Layer) -> VerifiedReader:
        """The layer's blob (compressed as ``layer.compression`` says), verified as it is read."""
        if not 0 <= layer.index < len(self.layers) or self.layers[layer.index] != layer:
            raise ImageError(f"image {self.source}: {layer.describe()} is not a layer of this image")
        f, size = self._files.open(self._layer_paths[layer.index])
        what = f"image {self.source}: {layer.describe()}"
        if size != layer.size:
            f.close()
            raise ImageError(f"{what}: blob has {size} bytes, its descriptor says {layer.size}")
        return VerifiedReader(f, size, layer.digest, what)

    def close(self) -> None:
        self._files.close()

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_image(path: str | os.PathLike[str], ref: str | None = None, *,
               platform: Platform | None = None) -> Image:
    """Open the image ``ref`` (default: the only one) of the layout or archive at ``path``."""
    source = os.fspath(path)
    files = open_files(source)
    try:
        if files.exists("manifest.json"):
            return _open_docker(files, ref)
        if files.exists("index.json"):
            return _open_oci(files, ref, platform or host_platform())
        raise fail(source, "neither an OCI image layout (index.json) nor a docker save archive "
                            "(manifest.json)")
    except BaseException:
        files.close()
        raise


def _config_layers(source: str, config_bytes: bytes, config_digest: str,
                   layer_info: list[_LayerInfo]) -> tuple[dict[str, Any], tuple[Layer, ...]]:
    """Parse the config and pair its diff_ids with (media type, digest, size, compression)."""
    config = parse_json(config_bytes, f"image {source}: config {config_digest}")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise fail(source, "config has no rootfs of type \"layers\"")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise fail(source, "config rootfs.diff_ids is not a list")
    if len(diff_ids) != len(layer_info):
        raise fail(source, f"config lists {len(diff_ids)} diff_ids but the manifest has "
                            f"{len(layer_info)} layers")
    diffs = [validate_digest(d, f"image {source}: config diff_id {i}") for i, d in enumerate(diff_ids)]
    chains = compute_chain_ids(diffs)
    layers = []
    for i, (info, diff, chain) in enumerate(zip(layer_info, diffs, chains, strict=True)):
        media, digest, size, comp = info
        if comp not in SUPPORTED_COMPRESSION:
            raise fail(source, f"layer {i} ({digest}) is {comp}-compressed, which is not supported "
                                "(save the image with gzip or uncompressed layers)")
        layers.append(Layer(i, media, digest, size, comp, diff, chain))
    return config, tuple(layers)


# --- OCI image layout -------------------------------------------------------------------------

def _open_oci(files: Files, ref: str | None, platform: Platform) -> Image:
    source = files.source
    if not files.exists("oci-layout"):
        raise fail(source, "index.json without oci-layout: not an OCI image layout")
    layout = read_plain_json(files, "oci-layout")
    version = layout.get("imageLayoutVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise fail(source, f"unsupported imageLayoutVersion {version!r}")
    index = read_plain_json(files, "index.json")
    entries = _index_entries(source, index, "index.json")
    cands = []
    for desc in entries:
        names = [desc.annotations[k] for k in (REF_NAME, CONTAINERD_NAME) if desc.annotations.get(k)]
        cands.append(Candidate(names, desc.digest, [desc.digest], desc))
    chosen = choose(source, cands, ref)
    desc: Descriptor = chosen.entry
    manifest_desc = _follow_index(files, desc, platform, 0)
    manifest = parse_json(
        read_blob_json(files, _blob_name(manifest_desc.digest), manifest_desc.digest, manifest_desc.size,
                        f"manifest {manifest_desc.digest}"),
        f"image {source}: manifest {manifest_desc.digest}")
    mt = manifest.get("mediaType", manifest_desc.media_type)
    if mt not in MANIFEST_TYPES:
        raise fail(source, f"manifest {manifest_desc.digest} has media type {mt!r}, not an image manifest")
    config_desc = _descriptor(manifest.get("config"), f"image {source}: manifest config")
    if config_desc.media_type not in CONFIG_TYPES:
        raise fail(source, f"config media type {config_desc.media_type!r}: not a container image")
    layer_list = manifest.get("layers")
    if not isinstance(layer_list, list):
        raise fail(source, "manifest has no layers list")
    info: list[_LayerInfo] = []
    paths = []
    for i, obj in enumerate(layer_list):
        ld = _descriptor(obj, f"image {source}: layer {i}")
        comp = LAYER_TYPES.get(ld.media_type)
        if comp is None:
            raise fail(source, f"layer {i} ({ld.digest}) has unknown media type {ld.media_type!r}")
        info.append((ld.media_type, ld.digest, ld.size, comp))
        paths.append(_blob_name(ld.digest))
    config_bytes = read_blob_json(files, _blob_name(config_desc.digest), config_desc.digest,
                                   config_desc.size, f"config {config_desc.digest}")
    config, layers = _config_layers(source, config_bytes, config_desc.digest, info)
    name = chosen.names[0] if chosen.names else None
    if ref is not None and not is_digest(ref):
        name = ref
    return Image(source=source, fmt="oci", files=files, name=name, names=chosen.names,
                 manifest_digest=manifest_desc.digest, config_digest=config_desc.digest, config=config,
                 layers=layers, layer_paths=tuple(paths))


def _index_entries(source: str, index: dict[str, Any], what: str) -> list[Descriptor]:
    if index.get("schemaVersion", 2) != 2:
        raise fail(source, f"{what}: schemaVersion {index.get('schemaVersion')!r} is not 2")
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise fail(source, f"{what} has no manifests list")
    return [_descriptor(m, f"image {source}: {what} entry {i}") for i, m in enumerate(manifests)]


def _follow_index(files: Files, desc: Descriptor, platform: Platform, depth: int) -> Descriptor:
    """The manifest descriptor ``desc`` leads to for ``platform`` (through nested indexes)."""
    source = files.source
    if desc.media_type in MANIFEST_TYPES:
        return desc
    if desc.media_type not in INDEX_TYPES:
        raise fail(source, f"{desc.digest} has media type {desc.media_type!r}: not an image")
    if depth >= MAX_INDEX_DEPTH:
        raise fail(source, f"image indexes nested deeper than {MAX_INDEX_DEPTH}")
    data = read_blob_json(files, _blob_name(desc.digest), desc.digest, desc.size, f"index {desc.digest}")
    index = parse_json(data, f"image {source}: index {desc.digest}")
    entries = _index_entries(source, index, f"index {desc.digest}")
    usable = [e for e in entries if e.media_type in MANIFEST_TYPES | INDEX_TYPES]
    matching = [e for e in usable if e.platform is not None and e.platform.os == platform.os
                and e.platform.architecture == platform.architecture
                and (not platform.variant or e.platform.variant in ("", platform.variant))]
    if not matching and len(usable) == 1 and usable[0].platform is None:
        matching = usable
    if not matching:
        have = ", ".join(sorted({str(e.platform) for e in usable if e.platform is not None})) or "none"
        raise fail(source, f"index {desc.digest} has no manifest for {platform} (platforms: {have})")
    # an exact variant first, then one without a variant, else the first listed
    matching.sort(key=lambda e: 0 if e.platform and e.platform.variant == platform.variant else 1)
    return _follow_index(files, matching[0], platform, depth + 1)


# --- docker save ------------------------------------------------------------------------------

def _digest_from_path(path: str) -> str | None:
    """``blobs/sha256/<hex>`` (docker 25+) or ``<hex>.json`` / ``<hex>.tar`` (older docker, podman)."""
    head, _, base = path.rpartition("/")
    if head.endswith("blobs/sha256") and is_digest(f"sha256:{base}"):
        return f"sha256:{base}"
    stem, dot, ext = base.rpartition(".")
    if dot and ext in ("json", "tar") and is_digest(f"sha256:{stem}"):
        return f"sha256:{stem}"
    return None


def _sniff_compression(files: Files, name: str) -> str:
    f, _ = files.open(name)
    with f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def _open_docker(files: Files, ref: str | None) -> Image:
    source = files.source
    f, size = files.open("manifest.json")
    data = read_all(f, size, f"image {source}: manifest.json")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise fail(source, f"manifest.json: invalid JSON ({e})") from None
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        raise fail(source, "manifest.json is not a list of images")
    cands = []
    for i, entry in enumerate(doc):
        config_path = clean_relpath(entry.get("Config"), f"image {source}: manifest.json entry {i} Config")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise fail(source, f"manifest.json entry {i}: RepoTags is not a list of names")
        cdig = _digest_from_path(config_path)
        cands.append(Candidate(list(tags), config_path, [cdig] if cdig else [], entry))
    chosen = choose(source, cands, ref)
    entry = chosen.entry
    config_path = chosen.key
    # The config's name is its digest (the image ID) in every writer we know; otherwise nothing
    # names the config, and it is trusted as the archive's entry point (manifest.json is too).
    config_digest = _digest_from_path(config_path)
    config_bytes = read_blob_json(files, config_path, config_digest, None, f"config {config_path}")
    if config_digest is None:
        config_digest = format_digest(hashlib.sha256(config_bytes).hexdigest())
    layer_paths = entry.get("Layers")
    if not isinstance(layer_paths, list):
        raise fail(source, "manifest.json entry has no Layers list")
    info: list[_LayerInfo] = []
    paths = []
    for i, p in enumerate(layer_paths):
        path = clean_relpath(p, f"image {source}: manifest.json layer {i}")
        lf, lsize = files.open(path)
        lf.close()
        comp = _sniff_compression(files, path)
        media = MEDIA_DOCKER_LAYER_GZIP if comp == "gzip" else MEDIA_DOCKER_LAYER
        info.append((media, _digest_from_path(path), lsize, comp))
        paths.append(path)
    config, layers = _config_layers(source, config_bytes, config_digest, info)
    name = ref if ref is not None and not is_digest(ref) else (chosen.names[0] if chosen.names else None)
    return Image(source=source, fmt="docker", files=files, name=name, names=chosen.names,
                 manifest_digest=None, config_digest=config_digest, config=config, layers=layers,
                 layer_paths=tuple(paths))
