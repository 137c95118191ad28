"""network.bundle.configure/release and the hook's input checks, without root or netlink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ociruntime.errors import NetworkError
from ociruntime.network import bundle as nb
from ociruntime.network import defs, etcfiles, hook
from ociruntime.network.ipam import Leases
from ociruntime.spec.default import default_config
from ociruntime.state.proc import start_time
from ociruntime.state.store import Record, Store

RUNTIME = "/usr/local/bin/ociruntime"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def host_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The "host's" /etc/hosts and resolv.conf, with a loopback nameserver (systemd-resolved)."""
    d = tmp_path / "hostetc"
    d.mkdir()
    (d / "hosts").write_text("127.0.0.1 localhost\n192.0.2.9 buildhost\n")
    (d / "resolv.conf").write_text("search example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.53\n")
    monkeypatch.setattr(etcfiles, "HOST_HOSTS", str(d / "hosts"))
    monkeypatch.setattr(etcfiles, "HOST_RESOLV", str(d / "resolv.conf"))
    return d


def _configure(tmp_path: Path, net: str, name: str = "web", **kw: object) -> tuple[dict, Path]:
    cfg = default_config()
    b = tmp_path / f"bundle-{name}"
    b.mkdir(exist_ok=True)
    args = {"store": str(tmp_path / "store"), "name": name, "runtime": RUNTIME,
            "state_root": str(tmp_path / "state"), **kw}
    nb.configure(cfg, str(b), net, **args)  # type: ignore[arg-type]
    return cfg, b


def _netns(cfg: dict) -> list[dict]:
    return [ns for ns in cfg["linux"]["namespaces"] if ns["type"] == "network"]


def _etc_mounts(cfg: dict, b: Path) -> None:
    mine = {m["destination"]: m for m in cfg["mounts"] if m["destination"].startswith("/etc/")}
    assert sorted(mine) == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    for dest, m in mine.items():
        assert m["type"] == "bind" and "bind" in m["options"]
        assert m["source"] == str(b / os.path.basename(dest))
    assert [m["destination"] for m in cfg["mounts"]].count("/etc/hosts") == 1


def _add_container(tmp_path: Path, cid: str, bundle: Path, alive: bool) -> None:
    pid = os.getpid() if alive else 0
    with Store(str(tmp_path / "state")).create(cid) as cdir:
        cdir.save(Record(id=cid, bundle=str(bundle), rootfs=str(bundle / "rootfs"), created="now",
                         pid=pid, pid_start=start_time(pid) or 0 if alive else 0))


def test_none(tmp_path: Path, host_files: Path) -> None:
    cfg, b = _configure(tmp_path, "none")
    assert _netns(cfg) == [{"type": "network"}]
    assert "hooks" not in cfg
    _etc_mounts(cfg, b)
    assert cfg["hostname"] == "web"
    assert (b / "hostname").read_text() == "web\n"
    assert "127.0.1.1\tweb" in (b / "hosts").read_text()
    assert (b / "resolv.conf").read_text() == ""  # only lo: no nameserver can be reached
    assert json.loads((b / "network.json").read_text())["mode"] == "none"


def test_host(tmp_path: Path, host_files: Path) -> None:
    cfg, b = _configure(tmp_path, "host")
    assert _netns(cfg) == []
    assert {ns["type"] for ns in cfg["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount"}
    assert (b / "hosts").read_text() == "127.0.0.1 localhost\n192.0.2.9 buildhost\n127.0.1.1\tweb\n"
    # The host's own resolver is reachable on its loopback: kept as it is.
    assert (b / "resolv.conf").read_text() == (host_files / "resolv.conf").read_text()
    _etc_mounts(cfg, b)
    assert "hooks" not in cfg


def test_bridge_default(tmp_path: Path, host_files: Path) -> None:
    cfg, b = _configure(tmp_path, "bridge")
    assert _netns(cfg) == [{"type": "network"}]
    assert cfg["hooks"] == {"createRuntime": [{"path": RUNTIME, "args": ["ociruntime", "network", "up"]}],
                            "poststop": [{"path": RUNTIME, "args": ["ociruntime", "network", "down"]}]}
    record = json.loads((b / "network.json").read_text())
    assert record == {"version": 1, "mode": "bridge", "name": "web", "network": "oci0",
                      "store": str(tmp_path / "store")}
    assert str(defs.load(str(tmp_path / "store"), "oci0").subnet) == "10.89.0.0/24"  # type: ignore[union-attr]
    assert "nameserver 127.0.0.53" not in (b / "resolv.conf").read_text()
    _etc_mounts(cfg, b)


def test_bridge_named_with_subnet_and_idempotent(tmp_path: Path, host_files: Path) -> None:
    cfg, b = _configure(tmp_path, "bridge:blue", subnet="172.30.5.0/24")
    net = defs.load(str(tmp_path / "store"), "blue")
    assert net is not None and str(net.gateway) == "172.30.5.1"
    # Configuring the same config again (another --net) replaces, never duplicates.
    cfg["hooks"]["poststop"].insert(0, {"path": "/bin/true"})
    nb.configure(cfg, str(b), "bridge:blue", store=str(tmp_path / "store"), name="web", runtime=RUNTIME,
                 state_root=str(tmp_path / "state"))
    assert [h["path"] for h in cfg["hooks"]["poststop"]] == ["/bin/true", RUNTIME]
    assert len(cfg["hooks"]["createRuntime"]) == 1
    _etc_mounts(cfg, b)
    nb.configure(cfg, str(b), "none", store=str(tmp_path / "store"), name="web", runtime=RUNTIME,
                 state_root=str(tmp_path / "state"))
    assert cfg["hooks"] == {"poststop": [{"path": "/bin/true"}]}


def test_container_mode(tmp_path: Path, host_files: Path) -> None:
    _, theirs = _configure(tmp_path, "bridge", name="db")
    (theirs / "hosts").write_text("127.0.0.1\tlocalhost\n10.89.0.7\tdb\n")  # as `up` rewrote it
    _add_container(tmp_path, "db1", theirs, alive=True)
    cfg, b = _configure(tmp_path, "container:db1", name="side")
    assert _netns(cfg) == [{"type": "network", "path": f"/proc/{os.getpid()}/ns/net"}]
    assert (b / "hosts").read_text() == "127.0.0.1\tlocalhost\n10.89.0.7\tdb\n"
    assert (b / "resolv.conf").read_text() == (theirs / "resolv.conf").read_text()
    assert (b / "hostname").read_text() == "side\n"
    assert "hooks" not in cfg
    _etc_mounts(cfg, b)
    # A container whose bundle is not ours: our own files, from the host's.
    other = tmp_path / "foreign"
    other.mkdir()
    _add_container(tmp_path, "foreign1", other, alive=True)
    _, b2 = _configure(tmp_path, "container:foreign1", name="x")
    assert "127.0.1.1\tx" in (b2 / "hosts").read_text()


def test_container_mode_errors(tmp_path: Path, host_files: Path) -> None:
    with pytest.raises(NetworkError, match="container:nope: container does not exist"):
        _configure(tmp_path, "container:nope")
    _add_container(tmp_path, "dead", tmp_path, alive=False)
    with pytest.raises(NetworkError, match="container:dead: the container is stopped"):
        _configure(tmp_path, "container:dead")
    with pytest.raises(NetworkError, match="invalid container id"):
        _configure(tmp_path, "container:../x")


@pytest.mark.parametrize("net,msg", [("bridged", "invalid network mode"),
                                     ("container:", "invalid network mode"),
                                     ("none:x", "invalid network mode"), ("", "invalid network mode"),
                                     ("bridge:", "invalid network name"),
                                     ("bridge:averyveryverylongname", "invalid network name"),
                                     ("bridge:a/b", "invalid network name")])
def test_bad_modes(tmp_path: Path, host_files: Path, net: str, msg: str) -> None:
    with pytest.raises(NetworkError, match=msg) as exc:
        _configure(tmp_path, net)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "bundle-web" / "network.json").exists()


def test_bad_subnet_and_runtime(tmp_path: Path, host_files: Path) -> None:
    with pytest.raises(NetworkError, match="invalid subnet"):
        _configure(tmp_path, "bridge:n1", subnet="10.0.0.1/24")
    with pytest.raises(NetworkError, match="only for bridge"):
        _configure(tmp_path, "none", subnet="10.0.0.0/24")
    with pytest.raises(NetworkError, match="must be absolute"):
        _configure(tmp_path, "bridge", runtime="ociruntime")


def test_release(tmp_path: Path, host_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ociruntime.network import link

    deleted: list[str] = []
    monkeypatch.setattr(link, "delete_link", lambda name: deleted.append(name) or True)
    _, b = _configure(tmp_path, "bridge")
    _, other = _configure(tmp_path, "bridge", name="other")
    store = str(tmp_path / "store")
    net = defs.load(store, "oci0")
    assert net is not None
    with Leases(store, net) as leases:  # what a crashed `up` / never-run poststop left
        leases.allocate("c1", str(b), defs.veth_name("c1"))
        leases.allocate("c2", str(other), defs.veth_name("c2"))
    nb.release(str(b))
    assert deleted == [defs.veth_name("c1")]
    with Leases(store, net) as leases:
        assert set(leases.table) == {"c2"}
    nb.release(str(b))  # idempotent
    assert deleted == [defs.veth_name("c1")]
    nb.release(str(tmp_path / "nonexistent"))  # no network.json: no-op
    _, none_bundle = _configure(tmp_path, "none", name="n")
    nb.release(str(none_bundle))
    assert deleted == [defs.veth_name("c1")]


def test_hook_state_checks(tmp_path: Path, host_files: Path) -> None:
    assert hook.parse_state(b'{"id": "c", "pid": 5, "bundle": "/b"}') == ("c", 5, "/b")
    for raw in (b"", b"[]", b'{"id": "c", "bundle": "rel"}', b'{"id": "c", "pid": -1, "bundle": "/b"}'):
        with pytest.raises(NetworkError, match="container state on stdin"):
            hook.parse_state(raw)
    _, b = _configure(tmp_path, "none", name="n")
    # Not a bridge bundle: both hooks leave it alone (no netlink, no error).
    hook.up(json.dumps({"id": "c", "pid": 1, "bundle": str(b)}).encode())
    hook.down(json.dumps({"id": "c", "pid": 0, "bundle": str(b)}).encode())
    _, bb = _configure(tmp_path, "bridge", name="b")
    with pytest.raises(NetworkError, match="no pid"):
        hook.up(json.dumps({"id": "c", "pid": 0, "bundle": str(bb)}).encode())


def test_cli_and_imports(tmp_path: Path) -> None:
    """The command exists, rejects a bad verb in one line, and bundle.py never loads pyroute2.

    Not -I: this checkout (cwd) must come first on sys.path, before any installed copy."""
    p = subprocess.run([sys.executable, "-m", "ociruntime", "network", "sideways"], cwd=REPO,
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode != 0 and "unknown network command 'sideways'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    probe = ("import sys; import ociruntime.network.bundle, ociruntime.network.ipam; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.strip() == "[]"
