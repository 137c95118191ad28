"""Build a small multi-layer busybox image, as an oci-archive or a docker-archive (docker save).

Usage::

    .venv/bin/python bundles/image.py DEST.tar [--format oci-archive|docker-archive]
                                               [--tag NAME:TAG] [--rootfs-cache DIR]

Three layers, made the way an image builder makes them (each the difference to the one below):

0. ``base``: the busybox rootfs of build.py (``/bin/busybox`` and its applet links, ``/etc``)
1. ``app``: a user ``app`` (1500:1500, also in group ``web`` 2000), ``/srv/www/index.html``,
   ``/opt/old`` (deleted again by layer 2), ``/opt/keep/a`` (hidden by layer 2's opaque
   ``/opt/keep``), a hard link ``/usr/share/demo/b`` to ``a``, a symlink, and ``/var/data/seed``
   under the image's VOLUME ``/var/data``
2. ``cleanup``: whiteout ``/opt/.wh.old``, opaque ``/opt/keep/.wh..wh..opq`` with ``/opt/keep/b``,
   ``/etc/motd``

The config: Cmd ``sh``, WorkingDir ``/srv/www``, User ``app``, a label, a VOLUME.  Tars are
reproducible (sorted names, fixed mtime), so the same image gets the same digests each time.
Used by ``make demo-net`` and the bundle tests.  Standard library only (and build.py).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bundles_build", _HERE / "build.py")
assert _spec and _spec.loader
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

MTIME = 1_700_000_000
INDEX_HTML = b"<h1>hello from an ociruntime bundle</h1>\n"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _jbytes(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class LayerTar:
    """A layer tar being written, in memory, reproducibly."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        i = tarfile.TarInfo(name)
        i.type, i.mode, i.uid, i.gid, i.mtime = kind, mode, uid, gid, MTIME
        return i

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> LayerTar:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))
        return self

    def file(self, name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> LayerTar:
        i = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        i.size = len(data)
        self.tar.addfile(i, io.BytesIO(data))
        return self

    def link(self, name: str, target: str) -> LayerTar:
        i = self._info(name, tarfile.LNKTYPE, 0o644)
        i.linkname = target
        self.tar.addfile(i)
        return self

    def symlink(self, name: str, target: str) -> LayerTar:
        i = self._info(name, tarfile.SYMTYPE, 0o777)
        i.linkname = target
        self.tar.addfile(i)
        return self

    def tree(self, root: Path) -> LayerTar:
        """Every entry under ``root``, sorted, with its mode and owner, at the fixed mtime."""
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                p = Path(dirpath) / name
                info = self.tar.gettarinfo(str(p), str(p.relative_to(root)))
                info.mtime, info.uname, info.gname = MTIME, "", ""
                if info.isreg():
                    with open(p, "rb") as f:
                        self.tar.addfile(info, f)
                else:
                    self.tar.addfile(info)
        return self

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def demo_layers(rootfs_cache: Path | None = None) -> list[bytes]:
    """The three layers described in the module docstring."""
    if rootfs_cache is None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "rootfs"
            build._build_rootfs(base, build.BUSYBOX)
            l0 = LayerTar().tree(base).bytes()
    else:
        l0 = LayerTar().tree(build._cached_rootfs(Path(rootfs_cache), build.BUSYBOX)).bytes()
    passwd = build._ETC_FILES["passwd"] + "app:x:1500:1500:app:/srv:/bin/sh\n"
    group = build._ETC_FILES["group"] + "app:x:1500:\nweb:x:2000:app\n"
    l1 = (LayerTar()
          .dir("etc").file("etc/passwd", passwd.encode()).file("etc/group", group.encode())
          .dir("srv").dir("srv/www").file("srv/www/index.html", INDEX_HTML)
          .dir("opt").dir("opt/old").file("opt/old/file", b"deleted in layer 2\n")
          .dir("opt/keep").file("opt/keep/a", b"hidden by layer 2\n")
          .dir("usr").dir("usr/share").dir("usr/share/demo")
          .file("usr/share/demo/a", b"one inode, two names\n").link("usr/share/demo/b", "usr/share/demo/a")
          .symlink("usr/share/demo/www", "/srv/www")
          .dir("var").dir("var/data", 0o750, 1500, 1500)
          .file("var/data/seed", b"seeded from the image\n", uid=1500, gid=1500)
          .bytes())
    l2 = (LayerTar()
          .dir("opt").file("opt/.wh.old", b"")
          .dir("opt/keep").file("opt/keep/.wh..wh..opq", b"").file("opt/keep/b", b"layer 2\n")
          .dir("etc").file("etc/motd", b"built by bundles/image.py\n")
          .bytes())
    return [l0, l1, l2]


def demo_config(layers: list[bytes]) -> dict:
    return {
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEMO=1"],
            "WorkingDir": "/srv/www", "User": "app",
            "Labels": {"org.example.demo": "yes"}, "Volumes": {"/var/data": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": [_sha(x) for x in layers]},
        "history": [{"created_by": f"bundles/image.py layer {i}"} for i in range(len(layers))],
    }


def _write_tar(dest: Path, members: dict[str, bytes]) -> Path:
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            t.addfile(info, io.BytesIO(data))
    tmp.rename(dest)
    return dest


def oci_archive(dest: Path, layers: list[bytes], config: dict, ref: str) -> Path:
    """An oci-archive: the OCI image layout as a tar, gzip layers, ``ref`` as ref.name."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict:
        blobs[f"blobs/sha256/{_sha(data)[7:]}"] = data
        return {"digest": _sha(data), "size": len(data)}

    cfg = _jbytes(config)
    manifest = _jbytes({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    **blob(gzip.compress(x, mtime=0))} for x in layers],
    })
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
         "annotations": {"org.opencontainers.image.ref.name": ref}}]}
    return _write_tar(dest, {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": _jbytes(index),
                             **blobs})


def docker_archive(dest: Path, layers: list[bytes], config: dict, tag: str) -> Path:
    """A docker-archive as ``podman save`` writes it: ``<diffid>.tar`` layers, ``<id>.json``."""
    cfg = _jbytes(config)
    members = {f"{_sha(x)[7:]}.tar": x for x in layers}
    members[f"{_sha(cfg)[7:]}.json"] = cfg
    members["manifest.json"] = _jbytes([{"Config": f"{_sha(cfg)[7:]}.json", "RepoTags": [tag],
                                         "Layers": [f"{_sha(x)[7:]}.tar" for x in layers]}])
    return _write_tar(dest, members)


def build_image(dest: Path, fmt: str = "oci-archive", tag: str = "localhost/ociruntime-demo:latest",
                rootfs_cache: Path | None = None) -> Path:
    layers = demo_layers(rootfs_cache)
    config = demo_config(layers)
    if fmt == "oci-archive":
        return oci_archive(Path(dest), layers, config, tag)
    if fmt == "docker-archive":
        return docker_archive(Path(dest), layers, config, tag)
    raise ValueError(f"unknown format {fmt!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a small multi-layer busybox image archive.")
    p.add_argument("dest", type=Path)
    p.add_argument("--format", default="oci-archive", choices=("oci-archive", "docker-archive"))
    p.add_argument("--tag", default="localhost/ociruntime-demo:latest")
    p.add_argument("--rootfs-cache", type=Path)
    ns = p.parse_args(argv)
    try:
        print(build_image(ns.dest, ns.format, ns.tag, ns.rootfs_cache))
    except (OSError, build.OCIError) as e:
        print(f"image.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
