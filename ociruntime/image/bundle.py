"""Bundles made from images: ``ociruntime bundle create | delete | list``.

A bundle directory made here::

    DIR/config.json     from the image config (runspec.py), volumes and network added
    DIR/rootfs/         overlay: the image's layers (read-only, from the layer store) under
    DIR/upper/          the container's own writable layer,
    DIR/work/           and overlayfs's work directory  -- or, with --copy, a full copy
    DIR/lower/          short links to the layers, only for a stack too long for one mount page
    DIR/volumes/<n>/    anonymous volumes (image VOLUMEs no flag covers)
    DIR/bundle.json     what create did: image, layers, volumes, network (read by delete/list)
    DIR/hosts, hostname, resolv.conf, network.json   the network's files (ociruntime/network)

The data root (``--store``, default /var/lib/ociruntime) holds what bundles share::

    layers/     the layer store (store.py): each layer once, by ChainID
    volumes/    named volumes (volumes.py)
    networks/   bridge networks and their address leases (ociruntime/network)
    bundles/    one small file per bundle, ``<key>.json`` = {"dir": ...}: what ``list`` shows

Order of ``create`` (each step registers its undo; any failure runs them all, newest first, so
a refused image or a failing step leaves no directory, mount, volume or lease behind):
open and verify the image -> extract missing layers -> mount (or copy) the rootfs -> volumes
(seeding needs the rootfs) -> config (User needs the rootfs's /etc/passwd) -> network -> write
config.json and bundle.json -> register.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

from ociruntime.errors import ImageError, UsageError, suppress
from ociruntime.image import overlay
from ociruntime.image.volumes import Volume, VolumeStore, mount_entry, plan_volumes, seed
from ociruntime.record import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

DEFAULT_STORE = "/var/lib/ociruntime"
BUNDLE_META = "bundle.json"
REGISTRY = "bundles"
META_VERSION = 1
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
# what create makes in DIR (and delete removes); anything else in DIR is the user's
OWN_ENTRIES = ("config.json", "rootfs", "upper", "work", overlay.LINK_DIR, "volumes", BUNDLE_META,
               "hosts", "hostname", "resolv.conf", "network.json")
# A container run from an image gets docker's default capabilities (runc's `spec` has three):
# images expect to chown, setuid, bind low ports and ping as they do under docker and podman.
IMAGE_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
              "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
              "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


@dataclass
class CreateOptions:
    image: str                      # SRC[:REF]
    directory: str
    name: str = ""
    store: str = DEFAULT_STORE
    copy: bool = False
    volumes: list[Volume] = field(default_factory=list)
    net: str = "none"
    subnet: str | None = None
    args: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    terminal: bool = False
    readonly: bool = False
    runtime: str = ""               # absolute path of ociruntime, for the network hooks
    state_root: str = ""            # the runtime's --root (container:ID)


def split_image_arg(text: str) -> tuple[str, str | None]:
    """``SRC[:REF]``: the longest prefix before a ':' that exists is the source."""
    if os.path.exists(text):
        return text, None
    best: tuple[str, str | None] | None = None
    for i, c in enumerate(text):
        if c == ":" and os.path.exists(text[:i]):
            best = (text[:i], text[i + 1:] or None)
    if best is None:
        src = text.split(":", 1)[0]
        raise ImageError(f"image {src}: no such file or directory")
    return best


def _key(directory: str) -> str:
    return hashlib.sha256(directory.encode()).hexdigest()[:24]


def _write_json(path: str, doc: object, mode: int = 0o644) -> None:
    """config.json and bundle.json, replaced crash-safe (network/fileio.py's writer)."""
    from ociruntime.network.fileio import write_atomic

    write_atomic(path, (json.dumps(doc, indent="\t") + "\n").encode(), mode)


class _Undo:
    """Undo steps, run newest first; each one's failure is swallowed so the rest still run."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []

    def push(self, fn: Callable[[], None]) -> None:
        self.steps.append(fn)

    def run(self) -> None:
        while self.steps:
            with suppress(Exception):
                self.steps.pop()()


def _prepare_dir(directory: str, undo: _Undo) -> None:
    """DIR must be new or empty: a bundle is never made on top of someone's files."""
    try:
        os.mkdir(directory, 0o711)
        undo.push(lambda: os.rmdir(directory))
        return
    except FileExistsError:
        pass
    if not os.path.isdir(directory) or os.path.islink(directory):
        raise ImageError(f"bundle {directory}: exists and is not a directory")
    if os.listdir(directory):
        raise ImageError(f"bundle {directory}: directory is not empty")


def create(opts: CreateOptions) -> dict[str, Any]:
    """Make the bundle; return its bundle.json document."""
    from ociruntime.image.source import open_image
    from ociruntime.image.store import LayerStore

    directory = os.path.realpath(opts.directory)
    store = os.path.realpath(opts.store)
    name = opts.name or os.path.basename(directory)
    if not _HOSTNAME.match(name):
        raise UsageError(f"--name {name!r}: must be a host name (letters, digits and '-', at most 63)")
    src, ref = split_image_arg(opts.image)
    src = os.path.realpath(src)
    # Unprivileged: no overlay mount in the host's mount namespace, so the rootfs is a copy, and
    # the config runs in a user namespace (rootless.py); a bridge needs root in the host's netns.
    rootless = os.geteuid() != 0
    copy = opts.copy or rootless
    if rootless and opts.net.startswith("bridge"):
        raise UsageError("--net bridge needs root (a bridge and veths in the host's network "
                         "namespace): use none, host or container:ID")
    undo = _Undo()
    try:
        with open_image(src, ref) as img:
            if img.platform.os != "linux":
                raise ImageError(f"image {src}: os is {img.platform.os!r}, not linux")
            _prepare_dir(directory, undo)
            # First a provisional bundle.json: if this command is killed (no undo runs), `bundle
            # delete DIR` still recognises the bundle and removes the mount and files it left.
            _write_json(os.path.join(directory, BUNDLE_META),
                        {"version": META_VERSION, "dir": directory, "store": store, "incomplete": True,
                         "rootfs": "copy" if copy else "overlay"})
            undo.push(lambda: os.unlink(os.path.join(directory, BUNDLE_META)))
            layers = LayerStore(os.path.join(store, "layers"))
            from ociruntime.image.flatten import flatten

            stack = [(str(p), layers.whiteouts(c))
                     for p, c in zip(layers.ensure_layers(img), img.chain_ids, strict=True)]
            rootfs = os.path.join(directory, "rootfs")
            os.mkdir(rootfs, 0o755)
            undo.push(lambda: _remove_entries(directory))
            if copy:
                flatten(stack, rootfs)
            else:
                os.mkdir(os.path.join(directory, "upper"), 0o755)
                os.mkdir(os.path.join(directory, "work"), 0o700)
                _mount_rootfs(directory, stack)
                undo.push(lambda: overlay.unmount(rootfs))
            config = _config(img.config, rootfs, name, opts)
            vols = _volumes(config, img.config, rootfs, directory, store, opts, undo)
            _network(config, directory, name, store, opts, undo)
            if rootless:
                from ociruntime.image.rootless import make_rootless

                make_rootless(config)
            from ociruntime.spec import schema

            schema.validate(config)
            _write_json(os.path.join(directory, "config.json"), config)
            meta = {
                "version": META_VERSION, "name": name, "dir": directory, "store": store,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "image": {"source": src, "ref": ref, "name": img.name, "format": img.format,
                          "manifest_digest": img.manifest_digest, "config_digest": img.config_digest,
                          "diff_ids": img.diff_ids, "chain_ids": img.chain_ids},
                "rootfs": "copy" if copy else "overlay", "rootless": rootless,
                "volumes": vols, "network": opts.net,
            }
            _write_json(os.path.join(directory, BUNDLE_META), meta)
            reg = os.path.join(store, REGISTRY)
            os.makedirs(reg, 0o700, exist_ok=True)
            entry = os.path.join(reg, f"{_key(directory)}.json")
            _write_json(entry, {"dir": directory}, 0o600)
            return meta
    except BaseException:
        undo.run()
        raise


def _mount_rootfs(directory: str, stack: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Mount DIR/rootfs: the layers of ``stack`` (diff dir, whiteouts; bottom first) under DIR's
    upper and work directories."""
    from ociruntime.image.flatten import visible_layers

    # A layer whose root is opaque hides all below it; overlayfs ignores the opaque mark on a
    # lower's root, so those layers are left out of the stack instead.
    lowers = [d for d, _ in visible_layers(stack)][::-1]
    overlay.mount_overlay(lowers, os.path.join(directory, "upper"), os.path.join(directory, "work"),
                          os.path.join(directory, "rootfs"), directory)


def mount(directory: str) -> bool:
    """Mount an overlay bundle's rootfs again (after a reboot, or an unmount by hand): the same
    layers from the store, the same upper directory.  False if it was mounted already."""
    from ociruntime.image.layers import remove_tree
    from ociruntime.image.store import LayerStore

    directory = os.path.realpath(directory)
    meta = read_meta(directory)
    rootfs = os.path.join(directory, "rootfs")
    if meta.get("incomplete"):
        raise ImageError(f"bundle {directory}: its create never finished: delete it and create it again")
    if meta.get("rootfs") != "overlay":
        raise ImageError(f"bundle {directory}: its rootfs is a copy, there is nothing to mount")
    if overlay.is_mount_point(rootfs):
        return False
    layers = LayerStore(os.path.join(meta["store"], "layers"))
    stack = []
    for chain in meta["image"]["chain_ids"]:
        if not layers.has(chain):
            raise ImageError(f"bundle {directory}: layer {chain} is no longer in the layer store "
                             f"{layers.root}: create the bundle again")
        stack.append((str(layers.diff_dir(chain)), layers.whiteouts(chain)))
    remove_tree(os.path.join(directory, overlay.LINK_DIR))  # links of an earlier mount
    _mount_rootfs(directory, stack)
    return True


def _config(image_config: dict[str, Any], rootfs: str, name: str, opts: CreateOptions) -> dict[str, Any]:
    from ociruntime.image.runspec import build_config

    config = build_config(image_config, rootfs, hostname=name, args=opts.args, entrypoint=opts.entrypoint,
                          env=opts.env, user=opts.user, workdir=opts.workdir, terminal=opts.terminal,
                          readonly=opts.readonly)
    config["process"]["capabilities"] = {k: list(IMAGE_CAPS) for k in ("bounding", "effective", "permitted")}
    return config


def _volumes(config: dict[str, Any], image_config: dict[str, Any], rootfs: str, directory: str,
             store: str, opts: CreateOptions, undo: _Undo) -> list[dict[str, Any]]:
    from ociruntime.image.runspec import image_volumes

    vstore = VolumeStore(store)
    out = []
    anon = 0
    for v in plan_volumes(opts.volumes, image_volumes(image_config)):
        if v.kind == "volume":
            source, created = vstore.ensure(v.source, rootfs, v.destination)
            if created:
                undo.push(lambda n=v.source: vstore.remove(n))
        elif v.kind == "anonymous":
            source = os.path.join(directory, "volumes", str(anon))
            anon += 1
            os.makedirs(source, 0o755)
            seed(rootfs, v.destination, source)
        else:
            source = v.source
        config.setdefault("mounts", []).append(mount_entry(v, source))
        out.append({"kind": v.kind, "source": v.source or source, "destination": v.destination,
                    "readonly": v.readonly})
    return out


def _network(config: dict[str, Any], directory: str, name: str, store: str, opts: CreateOptions,
             undo: _Undo) -> None:
    from ociruntime.network import bundle as netbundle

    netbundle.configure(config, directory, opts.net, store=store, name=name, runtime=opts.runtime,
                        state_root=opts.state_root, subnet=opts.subnet)
    undo.push(lambda: netbundle.release(directory))


# --- delete and list -----------------------------------------------------------------------------

def read_meta(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, BUNDLE_META)
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read(1 << 20))
    except FileNotFoundError:
        raise ImageError(f"bundle {directory}: not made by 'ociruntime bundle create' "
                         f"(no {BUNDLE_META})") from None
    except (OSError, ValueError) as e:
        raise ImageError(f"bundle {directory}: unreadable {BUNDLE_META}: {e}") from None
    if not isinstance(meta, dict) or meta.get("version") != META_VERSION:
        raise ImageError(f"bundle {directory}: {BUNDLE_META} has an unknown version")
    return meta


def containers_using(directory: str, state_root: str) -> list[str]:
    """Ids of the containers in ``state_root`` whose bundle is ``directory`` (`list`'s view)."""
    from ociruntime.lifecycle.context import Context
    from ociruntime.lifecycle.query import list_states

    return [st["id"] for st in list_states(Context(root=state_root))
            if os.path.realpath(st["bundle"]) == directory]


def delete(directory: str, state_root: str) -> None:
    """Remove the bundle: network leftovers, the rootfs mount, its files, its registry entry.
    Named volumes and the layer store stay (they are shared)."""
    directory = os.path.realpath(directory)
    meta = read_meta(directory)
    users = containers_using(directory, state_root)
    if users:
        raise ImageError(f"bundle {directory} is used by container {users[0]}: delete it first")
    rootfs = os.path.join(directory, "rootfs")
    others = [p for p in overlay.mounts_below(directory) if p != rootfs]
    if others:  # checked before anything is undone, so a refused delete changes nothing
        raise ImageError(f"bundle {directory}: {others[0]} is a mount point: unmount it first")
    from ociruntime.network import bundle as netbundle

    netbundle.release(directory)
    overlay.unmount(rootfs)
    _remove_entries(directory)
    with suppress(FileNotFoundError):
        os.rmdir(directory)
    store = meta.get("store")
    if isinstance(store, str):
        with suppress(FileNotFoundError):
            os.unlink(os.path.join(store, REGISTRY, f"{_key(directory)}.json"))


def _remove_entries(directory: str) -> None:
    """Remove what create made in ``directory``; never through a mount (a still-mounted rootfs,
    or anything mounted below the bundle: shutil.rmtree would cross into it)."""
    from ociruntime.image.layers import remove_tree

    rootfs = os.path.join(directory, "rootfs")
    if os.path.lexists(rootfs) and overlay.is_mount_point(rootfs):
        raise ImageError(f"bundle {directory}: rootfs is still mounted")
    below = overlay.mounts_below(directory)
    if below:
        raise ImageError(f"bundle {directory}: {below[0]} is a mount point: unmount it first")
    for entry in OWN_ENTRIES:
        p = os.path.join(directory, entry)
        if os.path.isdir(p) and not os.path.islink(p):
            remove_tree(p)
        else:
            with suppress(FileNotFoundError):
                os.unlink(p)


def list_bundles(store: str) -> list[dict[str, Any]]:
    """The registered bundles, with whether each rootfs is mounted now."""
    reg = os.path.join(os.path.realpath(store), REGISTRY)
    try:
        names = sorted(os.listdir(reg))
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        if not n.endswith(".json"):
            continue
        try:
            with open(os.path.join(reg, n), "rb") as f:
                directory = json.loads(f.read(1 << 16))["dir"]
            meta = read_meta(directory)
        except (OSError, ValueError, KeyError, TypeError, ImageError):
            continue  # a bundle removed by hand: not listed
        rootfs = os.path.join(directory, "rootfs")
        mounted = meta.get("rootfs") == "copy" or overlay.is_mount_point(rootfs)
        image = meta.get("image") or {}
        out.append({"name": meta.get("name", ""), "dir": directory,
                    "image": image.get("name") or image.get("source", ""),
                    "rootfs": meta.get("rootfs", ""), "ready": mounted,
                    "network": meta.get("network", ""), "created": meta.get("created", "")})
    return out
