"""Bridge, none, host and container:ID networks on real containers (issue 9's network half).

Everything network happens inside a "host" network namespace that each test makes for itself:
a holder process (``unshare --net sleep infinity``, not ``ip netns add``, which leaves a shared
/run/netns mount behind).  The runtime, ``ip`` and the gateway-side server run in it through
``nsenter --net`` (not ``ip netns exec``, which remounts /sys and hides /sys/fs/cgroup from the
runtime).  The bridge, the veths and every address live there; killing the holder at the end
removes them, and the machine's own network namespace is never touched.

Run with an installed runtime (the hooks need an executable path)::

    flock /tmp/oci-integration.lock env OCIRUNTIME=/tmp/X/bin/ociruntime \\
        .venv/bin/python -m pytest -q -p no:cacheprovider integration/test_network.py
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import BundleFactory, new_id, runtime_cmd

from ociruntime.linux.ns import CLONE_NEWNET, setns_path
from ociruntime.network import defs
from ociruntime.network.bundle import configure, release


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Output to files, not pipes: a created container inherits our stdio (see conftest)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout).returncode
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, rc, out.read().decode(), err.read().decode())


class HostNs:
    """A holder process's network namespace, and the runtime run inside it."""

    def __init__(self, tmp_path: Path, bundle: BundleFactory) -> None:
        cmd = runtime_cmd()
        if len(cmd) != 1:
            pytest.skip("the network hooks need an installed runtime: set OCIRUNTIME")
        self.runtime = cmd[0]
        self.root = tmp_path / "state"  # the leak check's state root
        self.store = tmp_path / "store"
        self.bundle = bundle
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        mine = os.readlink("/proc/self/ns/net")
        for _ in range(100):  # unshare execs sleep in the new namespace: wait for it
            if os.readlink(f"/proc/{self.holder.pid}/ns/net") != mine:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the holder never left our network namespace")
        self.ids: list[str] = []

    def ns(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *cmd]

    def sh(self, *cmd: str) -> str:
        p = _run(self.ns(*cmd))
        assert p.returncode == 0, f"{cmd}: {p.stderr}"
        return p.stdout

    def rt(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = _run(self.ns(self.runtime, "--root", str(self.root), *args))
        if check:
            assert p.returncode == 0, f"{args}: {p.stderr}"
        return p

    def make(self, net: str, name: str, args: tuple[str, ...] = ("sleep", "1000")) -> Path:
        def raw_sockets(cfg: dict) -> None:
            # busybox ping needs a raw socket (it has no ICMP datagram fallback): CAP_NET_RAW,
            # which docker's default set has and `spec`'s does not.
            for kind in ("bounding", "effective", "permitted"):
                cfg["process"]["capabilities"][kind].append("CAP_NET_RAW")

        b = self.bundle(args=list(args), mutate=raw_sockets)
        cfg = json.loads((b / "config.json").read_text())
        configure(cfg, str(b), net, store=str(self.store), name=name, runtime=self.runtime,
                  state_root=str(self.root))
        (b / "config.json").write_text(json.dumps(cfg))
        return b

    def run(self, b: Path) -> str:
        cid = new_id("net")
        self.rt("create", "--bundle", str(b), cid)
        self.ids.append(cid)
        self.rt("start", cid)
        return cid

    def exec(self, cid: str, *cmd: str) -> str:
        return self.rt("exec", cid, *cmd).stdout

    def delete(self, cid: str) -> None:
        self.rt("delete", "--force", cid)
        self.ids.remove(cid)

    def links(self) -> list[str]:
        return [line.split(":")[1].strip().split("@")[0] for line in self.sh("ip", "-o", "link").splitlines()]

    def leases(self, network: str = "oci0") -> dict:
        path = self.store / "networks" / f"{network}.leases"
        return json.loads(path.read_text())["leases"] if path.exists() else {}

    def close(self) -> None:
        for cid in list(self.ids):  # a failed test: delete in the holder, so `down` acts there
            self.rt("delete", "--force", cid, check=False)
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def host(tmp_path: Path, bundle: BundleFactory) -> Iterator[HostNs]:
    h = HostNs(tmp_path, bundle)
    try:
        yield h
    finally:
        h.close()


def _eth0_ip(h: HostNs, cid: str) -> str:
    out = h.exec(cid, "ip", "-4", "-o", "addr", "show", "eth0")
    return out.split()[3].split("/")[0]


def _no_veths(h: HostNs) -> None:
    for _ in range(50):  # the kernel destroys a dead container's namespace asynchronously
        veths = [name for name in h.links() if name.startswith("veth")]
        if not veths:
            return
        time.sleep(0.1)
    raise AssertionError(f"veths left in the holder: {veths}")


def test_bridge_containers_reach_each_other_and_the_gateway(host: HostNs, tmp_path: Path) -> None:
    a = host.run(host.make("bridge", "alpha"))
    b = host.run(host.make("bridge", "beta"))
    ip_a, ip_b = _eth0_ip(host, a), _eth0_ip(host, b)
    assert {ip_a, ip_b} == {"10.89.0.2", "10.89.0.3"}
    assert set(host.leases()) == {a, b}
    # The bridge and the host ends of both veths are in the holder, never in our namespace.
    links = host.links()
    assert "oci0" in links and defs.veth_name(a) in links and defs.veth_name(b) in links
    assert "10.89.0.1/24" in host.sh("ip", "-4", "-o", "addr", "show", "oci0")
    ours = _run(["ip", "-o", "link"]).stdout
    assert "oci0" not in ours and defs.veth_name(a) not in ours
    # /etc/hosts was rewritten in place under the bind mount; the route goes via the gateway.
    assert f"{ip_a}\talpha" in host.exec(a, "cat", "/etc/hosts")
    assert host.exec(a, "hostname").strip() == "alpha"
    assert "default via 10.89.0.1 dev eth0" in host.exec(a, "ip", "route")
    # ICMP both ways and to the gateway.
    for cid, target in ((a, ip_b), (b, ip_a), (a, "10.89.0.1")):
        out = host.exec(cid, "ping", "-c", "1", "-W", "2", target)
        assert "1 packets received" in out, out
    # TCP: container to container, container to a server on the gateway side.
    host.exec(b, "httpd", "-p", "8080", "-h", "/etc")
    for _ in range(50):
        got = host.rt("exec", a, "wget", "-q", "-O", "-", f"http://{ip_b}:8080/hostname", check=False)
        if got.returncode == 0:
            break
        time.sleep(0.1)
    assert got.stdout == "beta\n", got.stderr
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("from the gateway\n")
    server = subprocess.Popen(host.ns("busybox", "httpd", "-f", "-p", "10.89.0.1:8000", "-h", str(www)))
    try:
        for _ in range(50):
            got = host.rt("exec", b, "wget", "-q", "-O", "-", "http://10.89.0.1:8000/", check=False)
            if got.returncode == 0:
                break
            time.sleep(0.1)
        assert got.stdout == "from the gateway\n", got.stderr
    finally:
        server.kill()
        server.wait()
    host.delete(a)
    host.delete(b)
    _no_veths(host)
    assert host.leases() == {}


def test_container_mode_shares_the_network(host: HostNs) -> None:
    a = host.run(host.make("bridge", "main"))
    b_bundle = host.make(f"container:{a}", "side")
    b = host.run(b_bundle)
    assert _eth0_ip(host, b) == _eth0_ip(host, a) == "10.89.0.2"
    assert (b_bundle / "hosts").read_text() == host.exec(a, "cat", "/etc/hosts")
    assert set(host.leases()) == {a}  # no second address, no second veth
    assert [n for n in host.links() if n.startswith("veth")] == [defs.veth_name(a)]
    host.delete(b)
    host.delete(a)
    _no_veths(host)
    assert host.leases() == {}


def test_none_has_only_lo(host: HostNs) -> None:
    c = host.run(host.make("none", "lonely"))
    out = host.exec(c, "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    assert "127.0.1.1\tlonely" in host.exec(c, "cat", "/etc/hosts")
    host.delete(c)


def test_host_mode_sees_the_holders_interfaces(host: HostNs) -> None:
    host.sh("ip", "link", "add", "nettest0", "type", "bridge")  # no dummy module here
    c = host.run(host.make("host", "hosty"))
    names = [line.split(":")[1].strip() for line in host.exec(c, "ip", "-o", "link").splitlines()]
    assert "nettest0" in names
    assert host.exec(c, "readlink", "/proc/self/ns/net") == os.readlink(
        f"/proc/{host.holder.pid}/ns/net") + "\n"
    host.delete(c)


def test_failing_up_leaves_nothing(host: HostNs) -> None:
    """`up` fails after the veth exists and eth0 is configured (its last step, the hosts
    rewrite, refuses a symlink): create fails with one line and nothing is left."""
    b = host.make("bridge", "broken")
    (b / "hosts").rename(b / "hosts.real")
    (b / "hosts").symlink_to(b / "hosts.real")
    cid = new_id("net")
    p = host.rt("create", "--bundle", str(b), cid, check=False)
    assert p.returncode != 0
    assert "error running createRuntime hook #0" in p.stderr
    assert "too many levels of symbolic links" in p.stderr
    assert "oci0" in host.links()  # it got that far
    _no_veths(host)
    assert host.leases() == {}
    assert not (host.root / cid).exists()


def _in_holder(host: HostNs, fn: Callable[[], None]) -> None:
    """Run ``fn`` in a forked child that joined the holder's network namespace."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            setns_path(f"/proc/{host.holder.pid}/ns/net", CLONE_NEWNET)
            fn()
            code = 0
        except BaseException as e:
            os.write(2, f"{type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_release_after_a_lost_poststop(host: HostNs) -> None:
    """A runtime that lost its poststop hook (crashed, state edited) leaves the lease behind:
    `bundle delete` calls release(), which frees it; release() again is a no-op."""
    b = host.make("bridge", "orphan")
    cid = host.run(b)
    assert defs.veth_name(cid) in host.links() and set(host.leases()) == {cid}
    state_file = host.root / cid / "state.json"
    state = json.loads(state_file.read_text())
    assert state["hooks"]["poststop"]
    state["hooks"] = {}
    state_file.write_text(json.dumps(state))
    host.delete(cid)
    assert set(host.leases()) == {cid}  # nobody ran `network down`
    _in_holder(host, lambda: release(str(b)))
    _no_veths(host)
    assert host.leases() == {}
    _in_holder(host, lambda: release(str(b)))
    assert host.leases() == {}
