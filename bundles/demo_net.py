"""The image-to-network demo (``make demo-net``): an image archive built here, two bundles made
from it, two containers on one bridge talking to each other.

Steps, each printed as it runs:

1. bundles/image.py writes a three-layer busybox image as an oci-archive.
2. A throw-away network namespace plays the host (a ``sleep`` holder made with ``unshare --net``):
   the bridge, the veths and every address live there, and vanish with it.  The machine's own
   network is never touched.  The runtime runs there through ``nsenter --net``.
3. ``ociruntime bundle create --net bridge`` makes ``web`` (busybox httpd serving the image's
   /srv/www) and ``client``; the layer store is shared, each layer extracted once.
4. ``web`` runs detached; ``client`` fetches web's page over the bridge and pings the bridge's
   address; then everything is deleted: containers, bundles (no mount left), the namespace.

Run as root after ``make install``: ``python3 bundles/demo_net.py [--runtime PATH] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bundles_image", _HERE / "image.py")
assert _spec and _spec.loader
image = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(image)


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(cmd: list[str], *, check: bool = True, **kw: object) -> subprocess.CompletedProcess:
    print("$ " + shlex.join(cmd), flush=True)
    p = subprocess.run(cmd, text=True, **kw)  # type: ignore[call-overload]
    if check and p.returncode != 0:
        raise SystemExit(f"demo-net: command failed ({p.returncode}): {' '.join(cmd)}")
    return p


def container_ip(bundle: Path, name: str) -> str:
    """The address the createRuntime hook wrote into the bundle's hosts file for ``name``."""
    for line in (bundle / "hosts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and name in fields[1:] and not fields[0].startswith(("127.", "::", "fe", "ff")):
            return fields[0]
    raise SystemExit(f"demo-net: no address for {name} in {bundle / 'hosts'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", default=shutil.which("ociruntime") or "/usr/local/bin/ociruntime")
    p.add_argument("--work", type=Path, default=Path("build/demo-net"))
    ns = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("demo-net: run as root")
    work = ns.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store, state = work / "store", work / "state"
    rt = [ns.runtime, "--root", str(state)]

    step("1. build an image archive (three layers over busybox)")
    archive = image.build_image(work / "demo.tar", "oci-archive", rootfs_cache=work / "cache")
    print(f"{archive} ({archive.stat().st_size} bytes)")

    step("2. a private network namespace plays the host")
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    time.sleep(0.2)
    net = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
    bundles: list[Path] = []
    started = False
    try:
        def bundle_create(name: str, args: list[str], *flags: str) -> Path:
            d = work / name
            show([*rt, "bundle", "create", "--image", str(archive), "--store", str(store), "--net", "bridge",
                  "--name", name, *flags, str(d), *args])
            bundles.append(d)
            return d

        step("3. bundle web from the image (bridge oci0) and run it detached")
        web = bundle_create("web", ["httpd", "-f", "-p", "8080", "-h", "/srv/www"])
        show([*net, *rt, "run", "--detach", "--bundle", str(web), "web"], stdin=subprocess.DEVNULL)
        started = True
        web_ip = container_ip(web, "web")
        print(f"web is at {web_ip}")
        show([*net, "ip", "-brief", "address", "show", "oci0"])

        step("4. bundle client from the same image (its layers are in the store already); it talks to web")
        script = (f"ip -4 addr show eth0 | grep inet; wget -qO- http://{web_ip}:8080/; "
                  "gw=$(ip route | awk '/default/ {print $3}'); "
                  "ping -c1 -W2 $gw >/dev/null && echo ping $gw ok")
        client = bundle_create("client", ["sh", "-c", script], "--user", "0")  # root: ping's raw socket
        show([*rt, "bundle", "list", "--store", str(store)])
        show([*net, *rt, "run", "--bundle", str(client), "client"], stdin=subprocess.DEVNULL)
    finally:
        step("5. clean up")
        if started:
            show([*net, *rt, "delete", "--force", "web"], check=False)  # in the netns: poststop acts there
        show([*net, *rt, "delete", "--force", "client"], check=False, stderr=subprocess.DEVNULL)
        for d in bundles:
            show([*net, *rt, "bundle", "delete", "--store", str(store), str(d)], check=False)
        holder.kill()
        holder.wait()
    left = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(work) in line]
    print("mounts left under", work, ":", len(left))
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
