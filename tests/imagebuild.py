"""Build small test images in memory: layer tars, and the three source formats (OCI layout
directory, oci-archive, docker save old and new style).  No registry, no tools but tarfile."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

MTIME = 1_700_000_000


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class T:
    """A tar being written: one method per member type."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None) -> T:
        info.mtime = info.mtime or MTIME
        self.tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return self

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> T:
        i = tarfile.TarInfo(name)
        i.type, i.mode, i.uid, i.gid = tarfile.DIRTYPE, mode, uid, gid
        return self._add(i)

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
             xattrs: dict[str, str] | None = None, size: int | None = None) -> T:
        i = tarfile.TarInfo(name)
        i.size, i.mode, i.uid, i.gid = len(data), mode, uid, gid
        if xattrs:
            i.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        if size is not None:  # a lying header: the data written stays `data`
            i.size = size
            info = i.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            self.tar.fileobj.write(info)
            self.tar.offset += len(info)
            self.tar.fileobj.write(data)
            blocks, rem = divmod(len(data), tarfile.BLOCKSIZE)
            if rem:
                self.tar.fileobj.write(b"\0" * (tarfile.BLOCKSIZE - rem))
                blocks += 1
            self.tar.offset += blocks * tarfile.BLOCKSIZE
            return self
        return self._add(i, data)

    def symlink(self, name: str, target: str) -> T:
        i = tarfile.TarInfo(name)
        i.type, i.linkname, i.mode = tarfile.SYMTYPE, target, 0o777
        return self._add(i)

    def hardlink(self, name: str, target: str) -> T:
        i = tarfile.TarInfo(name)
        i.type, i.linkname = tarfile.LNKTYPE, target
        return self._add(i)

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o666) -> T:
        i = tarfile.TarInfo(name)
        i.type, i.devmajor, i.devminor, i.mode = tarfile.CHRTYPE, major, minor, mode
        return self._add(i)

    def fifo(self, name: str) -> T:
        i = tarfile.TarInfo(name)
        i.type, i.mode = tarfile.FIFOTYPE, 0o644
        return self._add(i)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def sample_layers() -> list[bytes]:
    """Three layers: a base; deletions (a whiteout, an opaque dir) and additions; an update."""
    l0 = (T().dir("bin").dir("etc").dir("usr").dir("opt").dir("opt/data").dir("del").dir("keep", 0o750, 5, 6)
          .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
          .file("etc/hosts", b"127.0.0.1 localhost\n")
          .file("bin/sh", b"#!busybox\n" * 100, mode=0o4755)
          .hardlink("bin/ls", "bin/sh")
          .symlink("usr/bin", "../bin")
          .file("opt/data/a", b"a\n").file("opt/data/b", b"b\n")
          .file("del/me", b"gone soon\n").file("del/stays", b"stays\n")
          .file("keep/owned", b"x", mode=0o640, uid=1234, gid=4321)
          .bytes())
    l1 = (T().dir("del").file("del/.wh.me").dir("opt/data").file("opt/data/.wh..wh..opq")
          .file("opt/data/c", b"c\n").file("etc/new", b"new\n", mode=0o2755)
          .symlink("etc/link", "/etc/passwd")
          .bytes())
    l2 = (T().file("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n")
          .file("etc/attr", b"xattr\n", xattrs={"user.test": "yes"})
          .bytes())
    return [l0, l1, l2]


def config_for(layers: list[bytes], **extra: object) -> dict:
    cfg = {
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
    }
    cfg.update(extra)
    return cfg


def jbytes(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


class Layout:
    """An OCI image layout being written into a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.entries: list[dict] = []

    def blob(self, data: bytes) -> dict:
        d = sha(data)
        (self.path / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return {"digest": d, "size": len(data)}

    def image(self, layers: list[bytes], config: dict | None = None, compress: list[str] | None = None,
              layer_types: list[str] | None = None) -> dict:
        """Write config, layers and manifest; return the manifest descriptor (no index entry yet)."""
        config = config if config is not None else config_for(layers)
        compress = compress or ["gzip", "none", "gzip"][: len(layers)] + ["none"] * max(0, len(layers) - 3)
        descs = []
        for i, (data, comp) in enumerate(zip(layers, compress, strict=True)):
            blob = gzip.compress(data, mtime=0) if comp == "gzip" else data
            mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if comp == "gzip" else "")
            if layer_types:
                mt = layer_types[i]
            descs.append({"mediaType": mt, **self.blob(blob)})
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **self.blob(jbytes(config))},
            "layers": descs,
        }
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", **self.blob(jbytes(manifest))}

    def add(self, desc: dict, name: str | None = None, **annotations: str) -> None:
        entry = dict(desc)
        ann = dict(annotations)
        if name:
            ann["org.opencontainers.image.ref.name"] = name
        if ann:
            entry["annotations"] = ann
        self.entries.append(entry)
        self.write_index()

    def write_index(self) -> None:
        (self.path / "index.json").write_bytes(jbytes({"schemaVersion": 2, "manifests": self.entries}))


def oci_layout(path: Path, layers: list[bytes] | None = None,
               name: str | None = "example.com/test:1") -> Path:
    layers = layers if layers is not None else sample_layers()
    lay = Layout(path)
    lay.add(lay.image(layers), name)
    return path


def tar_dir(src: Path, dest: Path, prefix: str = "") -> Path:
    """A tar of a directory's files (as skopeo/podman write an oci-archive)."""
    with tarfile.open(dest, "w") as t:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for f in sorted(files):
                p = Path(root) / f
                t.add(p, prefix + str(p.relative_to(src)))
    return dest


def docker_save(dest: Path, layers: list[bytes] | None = None, tags: list[str] | None = None,
                new_style: bool = False, config: dict | None = None, podman: bool = False) -> Path:
    """A `docker save` tar: old style (<id>/layer.tar, <hex>.json), docker 25+ (an OCI layout,
    manifest.json pointing into blobs/sha256, uncompressed layers) or `podman save`'s
    docker-archive (<diffid hex>.tar, <hex>.json)."""
    layers = layers if layers is not None else sample_layers()
    tags = tags if tags is not None else ["example.com/test:1"]
    config = config if config is not None else config_for(layers)
    cfg = jbytes(config)
    members: dict[str, bytes] = {}
    if new_style:
        blob = lambda data: f"blobs/sha256/{sha(data)[7:]}"  # noqa: E731
        members["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
        layer_paths = []
        for data in layers:
            members[blob(data)] = data
            layer_paths.append(blob(data))
        members[blob(cfg)] = cfg
        config_path = blob(cfg)
        manifest = jbytes({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg),
                       "size": len(cfg)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(x),
                        "size": len(x)} for x in layers]})
        members[blob(manifest)] = manifest
        members["index.json"] = jbytes({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
             "size": len(manifest), "annotations": {"io.containerd.image.name": tags[0] if tags else "",
                                                    "org.opencontainers.image.ref.name": "1"}}]})
    else:
        layer_paths = []
        for i, data in enumerate(layers):
            if podman:
                members[f"{sha(data)[7:]}.tar"] = data
                layer_paths.append(f"{sha(data)[7:]}.tar")
                continue
            lid = hashlib.sha256(f"v1id{i}".encode()).hexdigest()
            members[f"{lid}/VERSION"] = b"1.0"
            members[f"{lid}/layer.tar"] = data
            layer_paths.append(f"{lid}/layer.tar")
        config_path = f"{sha(cfg)[7:]}.json"
        members[config_path] = cfg
    members["manifest.json"] = jbytes([{"Config": config_path, "RepoTags": tags, "Layers": layer_paths}])
    with tarfile.open(dest, "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return dest


def snapshot(root: Path, skip_vanished: bool = False) -> dict[str, tuple]:
    """Everything about a tree that an extraction must reproduce.  ``skip_vanished``: leave out
    names that readdir lists but lstat does not find (overlayfs lists the whiteouts of a lower
    directory that is not merged with another one, and hides them on lookup)."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except FileNotFoundError:
                if skip_vanished:
                    continue
                raise
            rel = str(p.relative_to(root))
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                detail: object = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                detail = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                detail = None
            try:
                xattrs = tuple(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                      for k in os.listxattr(p, follow_symlinks=False)))
            except OSError:
                xattrs = ()
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail, xattrs,
                        st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else None)
    return out
