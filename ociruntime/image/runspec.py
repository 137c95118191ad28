"""Image config -> the bundle's config.json, following the image-spec's conversion.md.

Pure conversion: the caller has already populated the bundle's rootfs (overlay mount or copy);
it is read only to resolve ``User`` against its /etc/passwd and /etc/group.  The rootfs is image
content, hence hostile: those two files are opened with openat2(RESOLVE_IN_ROOT) relative to an
O_PATH fd of the rootfs, so ``/etc -> /host/etc`` or ``etc/passwd -> ../../../etc/shadow`` resolve
inside the rootfs as a chroot would, never on the host; only regular files are read (a FIFO would
block, a device could be anything), and at most ``MAX_ID_FILE`` bytes of each.

Where conversion.md and docker/podman differ, the choice made is said where it is made.  Volumes
are not turned into mounts here (the bundle code does that, from :func:`image_volumes`).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from ociruntime.errors import ImageError, describe_oserror
from ociruntime.rootfs.resolve import open_in_root
from ociruntime.spec.default import default_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# /etc/passwd and /etc/group of real images are a few KiB; an image could make them huge.
MAX_ID_FILE = 4 << 20
# uid_t/gid_t range; 4294967295 is (uid_t)-1, "unchanged" to setresuid, and our schema refuses it.
MAX_ID = 4294967294

# conversion.md's implicit annotations: image config key -> annotation key.
_IMPLICIT = (
    ("os", "org.opencontainers.image.os"),
    ("architecture", "org.opencontainers.image.architecture"),
    ("variant", "org.opencontainers.image.variant"),
    ("os.version", "org.opencontainers.image.os.version"),
    ("author", "org.opencontainers.image.author"),
    ("created", "org.opencontainers.image.created"),
)


# ---------------------------------------------------------------------------------------------
# Typed access to the (untrusted) image config document


def _strings(value: object, what: str) -> list[str]:
    """A JSON list of strings, or null/absent (-> []); anything else is refused."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"image config: {what}: expected a list of strings")
    return list(value)


def _string(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImageError(f"image config: {what}: expected a string")
    return value


def _object(value: object, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImageError(f"image config: {what}: expected an object")
    return value


def _config_section(image_config: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(image_config, dict):
        raise ImageError("image config: expected a JSON object")
    return _object(image_config.get("config"), "config")


# ---------------------------------------------------------------------------------------------
# Users and groups, read from the rootfs


def _read_in_root(rootfd: int, rel: str) -> str | None:
    """The text of the in-root file ``rel`` (None if it does not exist), bounded, regular only."""
    name = "/" + rel
    try:
        # O_NONBLOCK: opening a FIFO the image planted must not hang us (it is refused below).
        fd = open_in_root(rootfd, rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, name=name)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise ImageError(describe_oserror(e, "image rootfs:")) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"image rootfs: {name} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_ID_FILE:
            chunk = os.read(fd, MAX_ID_FILE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ImageError(describe_oserror(e, f"image rootfs: read {name}")) from None
    finally:
        os.close(fd)
    if size > MAX_ID_FILE:
        raise ImageError(f"image rootfs: {name} is larger than {MAX_ID_FILE} bytes")
    return b"".join(chunks).decode("utf-8", errors="surrogateescape")


def _parse_id(text: str) -> int | None:
    """A decimal uid/gid in range, or None (ASCII digits only: str.isdigit takes '²')."""
    if not text or len(text) > 10 or text.strip("0123456789"):
        return None
    n = int(text)
    return n if n <= MAX_ID else None


def _entries(text: str | None, min_fields: int) -> list[list[str]]:
    """colon-separated records of a passwd/group file; blank, comment and short lines skipped."""
    out = []
    for line in (text or "").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            out.append(fields)
    return out


def _find_passwd(text: str | None, *, name: str | None, uid: int | None) -> tuple[str, int, int] | None:
    """(name, uid, gid) of the first passwd entry matching ``name`` or ``uid`` (getpwnam order)."""
    for fields in _entries(text, 4):
        e_uid, e_gid = _parse_id(fields[2]), _parse_id(fields[3])
        if e_uid is None or e_gid is None:
            continue  # a malformed line is skipped, as libc does
        if (name is not None and fields[0] == name) or (uid is not None and e_uid == uid):
            return fields[0], e_uid, e_gid
    return None


def resolve_user(rootfs: str, user: str) -> tuple[int, int, list[int]]:
    """uid, gid, additional gids for an image/--user value: "", "name", "uid", "name:group",
    "uid:gid", "name:gid", "uid:group".

    Names are looked up in the rootfs's /etc/passwd and /etc/group (inside the rootfs only); a
    name not found is an ImageError.  A numeric uid is taken verbatim; its gid and groups come
    from a passwd entry with that uid if there is one, else gid 0 (docker's behaviour).  "" is
    uid 0 looked up the same way (docker and podman: root).  An empty part ("name:", ":gid")
    counts as absent.

    additionalGids: the groups of /etc/group listing the passwd entry's name as a member, minus
    the primary gid, only when the user was found in passwd and no group was given.  conversion.md
    says a numeric user SHOULD NOT get them; docker and podman give them to a numeric uid that has
    a passwd entry (``USER 1000`` then has its groups), and we do as they do.
    """
    user_part, _, group_part = user.partition(":")
    try:
        rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ImageError(describe_oserror(e, "image rootfs")) from None
    try:
        passwd = _read_in_root(rootfd, "etc/passwd")
        group_text: str | None = None
        group_read = False

        def groups() -> str | None:
            nonlocal group_text, group_read
            if not group_read:
                group_text = _read_in_root(rootfd, "etc/group")
                group_read = True
            return group_text

        num_uid = _parse_id(user_part or "0")
        if num_uid is not None:
            entry = _find_passwd(passwd, name=None, uid=num_uid)
            uid, gid = num_uid, (entry[2] if entry else 0)
        elif user_part.strip("0123456789") == "":
            raise ImageError(f"uid {user_part} is out of range")
        else:
            entry = _find_passwd(passwd, name=user_part, uid=None)
            if entry is None:
                raise ImageError(f"unable to find user {user_part}: no matching entries in passwd file")
            uid, gid = entry[1], entry[2]

        if group_part:
            num_gid = _parse_id(group_part)
            if num_gid is not None:
                return uid, num_gid, []
            if group_part.strip("0123456789") == "":
                raise ImageError(f"gid {group_part} is out of range")
            for fields in _entries(groups(), 3):
                if fields[0] == group_part and (g := _parse_id(fields[2])) is not None:
                    return uid, g, []
            raise ImageError(f"unable to find group {group_part}: no matching entries in group file")

        extra: list[int] = []
        if entry is not None:
            for fields in _entries(groups(), 4):
                g = _parse_id(fields[2])
                if g is not None and g != gid and g not in extra and entry[0] in fields[3].split(","):
                    extra.append(g)
        return uid, gid, extra
    finally:
        os.close(rootfd)


# ---------------------------------------------------------------------------------------------
# Volumes


def image_volumes(image_config: dict) -> list[str]:
    """The image's config.Volumes keys, normalized (absolute, clean), sorted, deduplicated.

    A relative key (docker's builder never writes one) is taken relative to "/", as the
    container would see it.  A key still holding ".." after normalization, or naming "/", is
    refused: it would mount over or outside the root.
    """
    volumes = _object(_config_section(image_config).get("Volumes"), "config.Volumes")
    out: set[str] = set()
    for key in volumes:
        if not key or "\0" in key:
            raise ImageError(f"image config: config.Volumes: invalid path {key!r}")
        clean = posixpath.normpath(key)
        if ".." in clean.split("/"):
            raise ImageError(f"image config: config.Volumes: {key!r} leaves the root")
        clean = "/" + ("" if clean == "." else clean.lstrip("/"))
        if clean == "/":
            raise ImageError(f"image config: config.Volumes: {key!r} is the root itself")
        out.add(clean)
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# The conversion


def _env_key(entry: str, what: str) -> str:
    key, eq, _ = entry.partition("=")
    if not eq or not key:
        raise ImageError(f"{what}: invalid environment entry {entry!r} (expected KEY=value)")
    return key


def _merge_env(image_env: list[str], overrides: list[str] | tuple[str, ...], hostname: str,
               terminal: bool) -> list[str]:
    """Image Env, then overrides by key (in place; new keys appended), then our defaults.

    conversion.md: a converter SHOULD NOT add a variable the image sets, so PATH, HOSTNAME and
    TERM are added only when neither the image nor the caller set them.  HOSTNAME: docker and
    podman add it (the container's hostname) and programs read it, so we add it too.
    """
    merged: dict[str, str] = {}
    for entry in image_env:
        merged[_env_key(entry, "image config: config.Env")] = entry
    for entry in overrides:
        merged[_env_key(entry, "env")] = entry
    defaults = [("PATH", DEFAULT_PATH), ("HOSTNAME", hostname)]
    if terminal:
        defaults.append(("TERM", "xterm"))
    for key, value in defaults:
        merged.setdefault(key, f"{key}={value}")
    return list(merged.values())


def _cwd(workdir: str | None, image_workdir: str) -> str:
    """The process cwd: absolute and clean.

    A relative directory is refused (``docker run -w rel`` refuses it too) rather than joined to
    "/": it would silently run the program somewhere the image author did not mean.
    """
    cwd = workdir if workdir else (image_workdir or "/")
    what = "workdir" if workdir else "image config: config.WorkingDir"
    if not cwd.startswith("/") or "\0" in cwd:
        raise ImageError(f"{what}: {cwd!r} is not an absolute path")
    return "/" + posixpath.normpath(cwd).lstrip("/")


def _annotations(image_config: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    """conversion.md's implicit annotations, then config.Labels, which take precedence.

    Every label is passed through: conversion.md asks converters not to drop image annotations,
    and ociruntime acts on no annotation (no hooks or systemd properties from annotations), so
    none is unsafe for us.  If the runtime ever interprets one, filter it here.
    """
    out: dict[str, str] = {}
    for key, ann in _IMPLICIT:
        value = _string(image_config.get(key), key)
        if value:
            out[ann] = value
    features = _strings(image_config.get("os.features"), "os.features")
    if features:
        out["org.opencontainers.image.os.features"] = ",".join(features)
    stop = _string(config.get("StopSignal"), "config.StopSignal")
    if stop:
        out["org.opencontainers.image.stopSignal"] = stop
    ports = _object(config.get("ExposedPorts"), "config.ExposedPorts")
    if ports:
        out["org.opencontainers.image.exposedPorts"] = ",".join(sorted(ports))
    labels = _object(config.get("Labels"), "config.Labels")
    for key, value in labels.items():
        if not isinstance(value, str):
            raise ImageError(f"image config: config.Labels: {key}: expected a string")
        out[key] = value
    return out


def build_config(image_config: dict, rootfs: str, *, hostname: str | None = None,
                 args: list[str] | None = None, entrypoint: list[str] | None = None,
                 env: list[str] | tuple[str, ...] = (), user: str | None = None,
                 workdir: str | None = None, terminal: bool = False, readonly: bool = False) -> dict:
    """The config.json for a bundle made from an image.  image_config is the whole image config
    document (with "config", "os", "architecture", "rootfs"...).  rootfs is the bundle's rootfs
    directory ALREADY populated (an overlay mount or a copy), used only to resolve User against
    its /etc/passwd and /etc/group.  Returns a dict valid against our schema
    (ociruntime.spec.schema), based on ociruntime.spec.default.default_config() with
    root.path "rootfs".

    Overrides (the caller's, "externally provided inputs" in conversion.md terms): ``entrypoint``
    replaces the image's Entrypoint and, as ``docker run --entrypoint`` does, drops the image's
    Cmd; ``args`` replaces Cmd; ``env`` entries replace image variables by key.
    """
    config = _config_section(image_config)
    os_name = _string(image_config.get("os"), "os")
    if os_name != "linux":
        raise ImageError(f"image is for os {os_name or '(none)'!r}, not linux")

    image_ep = _strings(config.get("Entrypoint"), "config.Entrypoint")
    image_cmd = _strings(config.get("Cmd"), "config.Cmd")
    if entrypoint is not None:
        ep = _strings(entrypoint, "entrypoint")
        cmd = _strings(args, "args")
    else:
        ep = image_ep
        cmd = _strings(args, "args") if args is not None else image_cmd
    argv = ep + cmd
    if not argv:
        raise ImageError("image has no command: give one")

    spec = default_config()
    spec["root"] = {"path": "rootfs", "readonly": readonly}
    if hostname is not None:
        spec["hostname"] = hostname

    uid, gid, extra = resolve_user(rootfs, user if user is not None
                                   else _string(config.get("User"), "config.User"))
    proc = spec["process"]
    proc["terminal"] = terminal
    proc["user"] = {"uid": uid, "gid": gid}
    if extra:
        proc["user"]["additionalGids"] = extra
    proc["args"] = argv
    proc["env"] = _merge_env(_strings(config.get("Env"), "config.Env"), env, spec["hostname"], terminal)
    proc["cwd"] = _cwd(workdir, _string(config.get("WorkingDir"), "config.WorkingDir"))

    annotations = _annotations(image_config, config)
    if annotations:
        spec["annotations"] = annotations
    return spec
