"""An image built by podman, and the same image saved by docker, make the same bundle (issue 9).

podman (private storage, test_podman's set-up) loads the demo image of bundles/image.py and
builds on it with ``podman build --isolation oci`` and our runtime for its RUN step: a deletion, a new
directory with a hard link, a removed tree, a COPY.  It saves the result as an oci-archive and a
docker-archive; the private dockerd of test_docker loads the docker-archive and ``docker save``s
it again.  Three archives of one image, written by three different writers: ``bundle create``
must give the same rootfs from each, and it must run.
"""

# ruff: noqa: F811  -- the fixtures are imported from the modules that define them

from __future__ import annotations

from pathlib import Path

import pytest
from test_docker import Docker, docker, docker_env  # noqa: F401  (fixtures)
from test_image_bundle import Bundles, bundles, images, mountinfo_under, snapshot  # noqa: F401
from test_podman import Podman, podman, podman_env  # noqa: F401  (fixtures)

pytestmark = pytest.mark.root

CONTAINERFILE = """FROM localhost/ociruntime-demo:latest
USER root
RUN rm /etc/motd && mkdir -p /built && echo by-podman > /built/by && ln /built/by /built/by2 \\
    && rm -r /usr/share/demo
COPY extra.txt /built/extra.txt
USER app
"""


def test_podman_built_and_docker_saved_give_one_rootfs(
        podman: Podman, docker: Docker, bundles: Bundles, images: dict[str, Path], tmp_path: Path) -> None:
    podman.copying("load", "-i", str(images["docker-archive"]))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    (ctx / "extra.txt").write_text("copied in\n")
    podman.copying("build", "--isolation", "oci", "--runtime", podman.runtime, "--network", "none",
                   "-t", "localhost/built:1", str(ctx))
    p_oci, p_docker, d_save = tmp_path / "p-oci.tar", tmp_path / "p-docker.tar", tmp_path / "d.tar"
    podman.copying("save", "--format", "oci-archive", "-o", str(p_oci), "localhost/built:1")
    podman.copying("save", "--format", "docker-archive", "-o", str(p_docker), "localhost/built:1")
    docker("load", "-i", str(p_docker), check=True)
    docker("save", "-o", str(d_save), "localhost/built:1", check=True)

    made = {}
    for name, archive in (("poci", p_oci), ("pdocker", p_docker), ("dsave", d_save)):
        d, _ = bundles.create(archive, name, args=["sh", "-c", "cat /built/by /built/extra.txt; id -un"])
        made[name] = snapshot(d / "rootfs")
    assert made["poci"] == made["pdocker"] == made["dsave"]
    root = made["dsave"]
    assert "etc/motd" not in root and "usr/share/demo" not in root and "bin/busybox" in root
    assert root["built/by"][4][1] == "built/by"  # by2 is a hard link to by
    p = bundles.run(bundles.tmp / "dsave")
    assert p.stdout.decode() == "by-podman\ncopied in\napp\n", p.stderr
