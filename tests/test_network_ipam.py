"""Network definitions and the lease file: allocation, reuse, exhaustion, crash safety, validation."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ociruntime.errors import NetworkError
from ociruntime.network import defs
from ociruntime.network.ipam import NETWORK_JSON, Leases


def _bundle(tmp_path: Path, name: str) -> str:
    """A bundle that counts as alive for the lease table (it has a network.json)."""
    b = tmp_path / name
    b.mkdir(exist_ok=True)
    (b / NETWORK_JSON).write_text("{}")
    return str(b)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "store")


# ---- names and subnets -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["oci0", "a", "net_1.x-y", "x" * 15])
def test_valid_names(name: str) -> None:
    assert defs.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a b", "..", ".", "br:0", "ä", "a\0"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(NetworkError, match="invalid network name"):
        defs.validate_name(name)


@pytest.mark.parametrize("text,why", [("10.1.2.3/24", "host bits"), ("fd00::/64", "IPv4"),
                                      ("10.0.0.0/31", "prefix length"), ("10.0.0.0/7", "prefix"),
                                      ("nonsense", "does not appear"), ("10.0.0.0/33", "")])
def test_bad_subnets(text: str, why: str) -> None:
    with pytest.raises(NetworkError, match=f"invalid subnet '{text}'.*{why}") as exc:
        defs.parse_subnet(text)
    assert "\n" not in str(exc.value)


def test_default_network_and_gateway(store: str) -> None:
    net = defs.ensure(store, "oci0")
    assert str(net.subnet) == "10.89.0.0/24" and str(net.gateway) == "10.89.0.1"
    on_disk = json.loads(Path(store, "networks", "oci0.json").read_text())
    assert on_disk == {"name": "oci0", "subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}
    assert defs.ensure(store, "oci0") == net  # persisted, not recomputed
    assert defs.load(store, "oci0") == net


def test_new_networks_take_the_next_free_subnet(store: str) -> None:
    a = defs.ensure(store, "a")  # not the default name: still the first free /24
    b = defs.ensure(store, "b")
    oci0 = defs.ensure(store, "oci0")  # 10.89.0.0/24 is taken by "a": the default moves on
    assert [str(n.subnet) for n in (a, b, oci0)] == ["10.89.0.0/24", "10.89.1.0/24", "10.89.2.0/24"]
    c = defs.ensure(store, "c", "192.168.7.0/28")
    assert str(c.gateway) == "192.168.7.1"
    assert str(defs.ensure(store, "d").subnet) == "10.89.3.0/24"


def test_subnet_conflicts(store: str) -> None:
    defs.ensure(store, "a", "10.10.0.0/16")
    with pytest.raises(NetworkError, match="overlaps network a"):
        defs.ensure(store, "b", "10.10.5.0/24")
    with pytest.raises(NetworkError, match=r"exists with subnet 10\.10\.0\.0/16"):
        defs.ensure(store, "a", "10.11.0.0/16")
    assert defs.load(store, "b") is None


def test_corrupt_definition_is_a_clear_error(store: str) -> None:
    defs.ensure(store, "oci0")
    path = Path(store, "networks", "oci0.json")
    path.write_text('{"name": "oci0", "subnet": "10.89.0.0/24", "gateway": "10.1.0.1"}')
    with pytest.raises(NetworkError, match=r"oci0\.json is corrupt \(gateway outside subnet\)"):
        defs.load(store, "oci0")
    path.write_text('{"name": "oci0", "sub')
    with pytest.raises(NetworkError, match=r"oci0\.json is corrupt"):
        defs.ensure(store, "oci0")


def test_veth_names_fit_ifnamsiz() -> None:
    names = {defs.veth_name(f"c{i}") for i in range(1000)}
    assert len(names) == 1000
    assert all(len(n) == 15 and n.startswith("veth") for n in names)
    assert defs.veth_name("x" * 255) == defs.veth_name("x" * 255)


# ---- leases ----------------------------------------------------------------------------------

def test_allocate_free_reuse(store: str, tmp_path: Path) -> None:
    net = defs.ensure(store, "oci0")
    b1, b2 = _bundle(tmp_path, "b1"), _bundle(tmp_path, "b2")
    with Leases(store, net) as leases:
        l1 = leases.allocate("c1", b1, "v1")
        l2 = leases.allocate("c2", b2, "v2")
    assert (str(l1.ip), str(l2.ip)) == ("10.89.0.2", "10.89.0.3")  # .1 is the gateway
    with Leases(store, net) as leases:  # a later process: same addresses for the same ids
        assert leases.allocate("c1", b1, "v1") == l1
        assert leases.free("c1") == l1
        assert leases.free("c1") is None  # freeing twice is fine
        assert leases.allocate("c3", b1, "v3").ip == l1.ip  # lowest free address again
    data = json.loads(Path(store, "networks", "oci0.leases").read_text())
    assert data["leases"] == {"c2": {"ip": "10.89.0.3", "bundle": b2, "veth": "v2"},
                              "c3": {"ip": "10.89.0.2", "bundle": b1, "veth": "v3"}}


def test_exhaustion_and_reclaim_of_deleted_bundles(store: str, tmp_path: Path) -> None:
    net = defs.ensure(store, "small", "10.77.0.0/29")  # hosts .1-.6; .1 is the gateway
    bundles = [_bundle(tmp_path, f"b{i}") for i in range(6)]
    with Leases(store, net) as leases:
        ips = [str(leases.allocate(f"c{i}", bundles[i], f"v{i}").ip) for i in range(5)]
        assert ips == [f"10.77.0.{i}" for i in range(2, 7)]
        with pytest.raises(NetworkError, match=r"network small: no free address in 10\.77\.0\.0/29"):
            leases.allocate("c5", bundles[5], "v5")
    os.unlink(os.path.join(bundles[2], NETWORK_JSON))  # bundle c2 is gone: its lease is stale
    with Leases(store, net) as leases:
        assert str(leases.allocate("c5", bundles[5], "v5").ip) == "10.77.0.4"
        assert leases.get("c2") is None


def test_of_bundle_compares_real_paths(store: str, tmp_path: Path) -> None:
    net = defs.ensure(store, "oci0")
    b = _bundle(tmp_path, "b")
    os.symlink(b, tmp_path / "link")
    with Leases(store, net) as leases:
        leases.allocate("c1", str(tmp_path / "link"), "v1")
        assert set(leases.of_bundle(b)) == {"c1"}
        assert leases.of_bundle(_bundle(tmp_path, "other")) == {}


def test_leftover_temp_file_is_ignored_and_removed(store: str, tmp_path: Path) -> None:
    net = defs.ensure(store, "oci0")
    b = _bundle(tmp_path, "b")
    with Leases(store, net) as leases:
        leases.allocate("c1", b, "v1")
    # A writer killed between writing its temp file and the rename left this behind.
    tmp = Path(store, "networks", ".oci0.leases.99999.tmp")
    tmp.write_text('{"half": ')
    with Leases(store, net) as leases:
        assert str(leases.get("c1").ip) == "10.89.0.2"  # type: ignore[union-attr]
        leases.allocate("c2", b, "v2")
    assert not tmp.exists()
    assert not [p for p in Path(store, "networks").iterdir() if p.name.endswith(".tmp")]


def test_corrupt_lease_file_is_a_clear_error(store: str, tmp_path: Path) -> None:
    net = defs.ensure(store, "oci0")
    path = Path(store, "networks", "oci0.leases")
    for content, reason in [("", "empty"),
                            ('{"leases": {"c1": {"ip": "10.89', "unterminated string at line 1"),
                            ('{"subnet": "10.89.0.0/24", "leases": {"a": {"ip": "10.89.0.2", "bundle": "/b",'
                             ' "veth": "v"}, "b": {"ip": "10.89.0.2", "bundle": "/c", "veth": "w"}}}',
                             "leased twice"),
                            ('{"subnet": "10.89.0.0/24", "leases": {"a": {"ip": "10.89.0.1", "bundle": "/b",'
                             ' "veth": "v"}}}', "outside the pool"),
                            ('{"subnet": "10.1.0.0/24", "leases": {}}', "subnet")]:
        path.write_text(content)
        with pytest.raises(NetworkError) as exc:
            with Leases(store, net):
                pass
        msg = str(exc.value)
        assert f"lease file {path} is corrupt" in msg and reason in msg.lower() and "\n" not in msg
        assert path.read_text() == content  # never reset behind the user's back


def test_a_killed_writer_leaves_the_old_table(store: str, tmp_path: Path) -> None:
    """Kill a process in the middle of a save (after the temp file is written, before the
    rename): the table on disk is the previous complete one."""
    net = defs.ensure(store, "oci0")
    b = _bundle(tmp_path, "b")
    with Leases(store, net) as leases:
        leases.allocate("c1", b, "v1")
    before = Path(store, "networks", "oci0.leases").read_bytes()
    script = f"""
import os
from ociruntime.network import defs, fileio
from ociruntime.network.ipam import Leases
real_rename = os.rename
def die(src, dst):
    os._exit(9)
os.rename = die
net = defs.load({store!r}, "oci0")
with Leases({store!r}, net) as leases:
    leases.allocate("c2", {b!r}, "v2")
"""
    p = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 9
    assert Path(store, "networks", "oci0.leases").read_bytes() == before
    with Leases(store, net) as leases:
        assert set(leases.table) == {"c1"}
        assert leases.allocate("c2", b, "v2").ip == ipaddress.IPv4Address("10.89.0.3")
