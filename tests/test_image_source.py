"""Opening images: the three formats agree, selection by name, multi-arch indexes, verification."""

from __future__ import annotations

import gzip
import json
import os

import pytest
from imagebuild import Layout, config_for, docker_save, jbytes, oci_layout, sample_layers, sha, tar_dir

from ociruntime.errors import ImageError
from ociruntime.image.digest import chain_ids
from ociruntime.image.refs import normalize_ref
from ociruntime.image.source import Platform, open_image


def drain(image, layer) -> bytes:
    with image.open_layer(layer) as f:
        data = f.read()
        assert f.verified
    return data


@pytest.fixture
def sources(tmp_path):
    layers = sample_layers()
    layout = oci_layout(tmp_path / "layout", layers)
    return {
        "oci-dir": layout,
        "oci-archive": tar_dir(layout, tmp_path / "oci.tar"),
        "oci-archive-dotslash": tar_dir(layout, tmp_path / "oci2.tar", prefix="./"),
        "docker-old": docker_save(tmp_path / "old.tar", layers),
        "docker-new": docker_save(tmp_path / "new.tar", layers, new_style=True),
        "docker-podman": docker_save(tmp_path / "podman.tar", layers, podman=True),
    }


def test_all_formats_agree(sources) -> None:
    layers = sample_layers()
    diffs = [sha(x) for x in layers]
    seen = {}
    for kind, path in sources.items():
        with open_image(path) as img:
            assert img.diff_ids == diffs, kind
            assert img.chain_ids == chain_ids(diffs), kind
            assert img.config == config_for(layers), kind
            assert img.name == "example.com/test:1", kind
            assert img.format == ("docker" if kind.startswith("docker") else "oci")
            contents = []
            for la in img.layers:
                blob = drain(img, la)
                contents.append(gzip.decompress(blob) if la.compression == "gzip" else blob)
            assert contents == layers, kind
            seen[kind] = img.layers
    assert seen["oci-dir"] == seen["oci-archive"] == seen["oci-archive-dotslash"]
    assert [la.compression for la in seen["oci-dir"]] == ["gzip", "none", "gzip"]
    # docker save layers are uncompressed; new style names them by digest, old style cannot
    assert [la.digest for la in seen["docker-new"]] == diffs
    assert [la.digest for la in seen["docker-podman"]] == diffs
    assert [la.digest for la in seen["docker-old"]] == [None, None, None]


def test_normalize_ref() -> None:
    assert normalize_ref("busybox") == "busybox:latest"
    assert normalize_ref("docker.io/library/busybox:1.36") == "busybox:1.36"
    assert normalize_ref("docker.io/me/app") == "me/app:latest"
    assert normalize_ref("localhost:5000/app") == "localhost:5000/app:latest"
    assert normalize_ref("app@sha256:" + "a" * 64) == "app@sha256:" + "a" * 64


def two_image_layout(path):
    lay = Layout(path)
    one = lay.image(sample_layers()[:1], compress=["none"])
    two = lay.image(sample_layers()[:2], compress=["none", "none"])
    lay.add(one, "docker.io/library/busybox:latest")
    lay.add(two, "localhost/app:2")
    lay.add(two, "v2")  # a tag-only ref.name, as skopeo writes for oci:DIR:v2
    return path, one, two


def test_select_by_name(tmp_path) -> None:
    path, one, two = two_image_layout(tmp_path / "l")
    for ref in ("busybox", "busybox:latest", "docker.io/library/busybox:latest"):
        with open_image(path, ref) as img:
            assert img.manifest_digest == one["digest"], ref
    for ref in ("app:2", "localhost/app:2", "v2", two["digest"]):
        with open_image(path, ref) as img:
            assert img.manifest_digest == two["digest"], ref
            assert len(img.layers) == 2


def test_select_refusals(tmp_path) -> None:
    path, _, _ = two_image_layout(tmp_path / "l")
    with pytest.raises(ImageError, match=r"holds 2 images, choose one by name: .*busybox:latest.*app:2"):
        open_image(path)
    with pytest.raises(ImageError, match=r"no image named 'nope'; it holds: docker\.io/library/busybox"):
        open_image(path, "nope")


def test_docker_select(tmp_path) -> None:
    p = docker_save(tmp_path / "d.tar", tags=["busybox:latest", "localhost/app:1"])
    for ref in ("busybox", "docker.io/library/busybox", "app:1", "localhost/app:1"):
        with open_image(p, ref) as img:
            assert len(img.layers) == 3
    with pytest.raises(ImageError, match="no image named 'other'"):
        open_image(p, "other")


def multiarch(path):
    lay = Layout(path)
    amd = lay.image(sample_layers()[:1], config_for(sample_layers()[:1]), compress=["none"])
    arm_layers = [sample_layers()[2]]
    arm = lay.image(arm_layers, config_for(arm_layers, architecture="arm64"), compress=["gzip"])
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {**arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {**amd, "platform": {"os": "linux", "architecture": "amd64"}},
        {**amd, "platform": {"os": "unknown", "architecture": "unknown"}},
    ]}
    desc = {"mediaType": "application/vnd.oci.image.index.v1+json", **lay.blob(jbytes(index))}
    lay.add(desc, "multi:1")
    return path, amd, arm


def test_index_followed_to_platform(tmp_path) -> None:
    path, amd, arm = multiarch(tmp_path / "m")
    with open_image(path, platform=Platform("linux", "amd64")) as img:
        assert img.manifest_digest == amd["digest"]
        assert img.platform == Platform("linux", "amd64")
    with open_image(path, "multi:1", platform=Platform("linux", "arm64")) as img:
        assert img.manifest_digest == arm["digest"]
    with pytest.raises(ImageError, match=r"no manifest for linux/s390x \(platforms: linux/amd64, "
                                         r"linux/arm64/v8, unknown/unknown\)"):
        open_image(path, platform=Platform("linux", "s390x"))


# --- verification ---------------------------------------------------------------------------------

def blob_path(layout, digest):
    return layout / "blobs" / "sha256" / digest[7:]


def test_tampered_manifest_and_config(tmp_path) -> None:
    layout = oci_layout(tmp_path / "l")
    index = json.loads((layout / "index.json").read_text())
    mdesc = index["manifests"][0]
    manifest = json.loads(blob_path(layout, mdesc["digest"]).read_bytes())
    cpath = blob_path(layout, manifest["config"]["digest"])
    good = cpath.read_bytes()
    cpath.write_bytes(good.replace(b"/bin/sh", b"/bin/XX"))  # same size, other digest
    with pytest.raises(ImageError, match=r"config sha256:\w+: digest mismatch: blob is sha256:"):
        open_image(layout)
    cpath.write_bytes(good + b" ")
    with pytest.raises(ImageError, match=r"blob has .* bytes, its descriptor says"):
        open_image(layout)
    cpath.write_bytes(good)
    mpath = blob_path(layout, mdesc["digest"])
    mpath.write_bytes(mpath.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion": 3'))
    with pytest.raises(ImageError, match=r"manifest sha256:.*digest mismatch"):
        open_image(layout)


def test_tampered_layer_detected_at_end_of_stream(tmp_path) -> None:
    layout = oci_layout(tmp_path / "l")
    with open_image(layout) as img:
        la = img.layers[1]  # uncompressed
        p = blob_path(layout, la.digest)
        data = bytearray(p.read_bytes())
        data[600] ^= 1
        p.write_bytes(bytes(data))
        with pytest.raises(ImageError, match=r"layer 1 \(sha256:\w+\): digest mismatch"):
            drain(img, la)
        p.write_bytes(bytes(data) + b"x")
        with pytest.raises(ImageError, match=r"blob has .* bytes, its descriptor says"):
            img.open_layer(la)


def test_reader_refuses_growing_blob(tmp_path) -> None:
    layout = oci_layout(tmp_path / "l")
    with open_image(layout) as img:
        la = img.layers[1]
        f = img.open_layer(la)
        blob_path(layout, la.digest).open("ab").write(b"more")  # grows after the size check
        with f, pytest.raises(ImageError, match=r"larger than the .* bytes its descriptor says"):
            f.read()


def test_refusals(tmp_path) -> None:
    layers = sample_layers()[:1]
    lay = Layout(tmp_path / "z")
    lay.add(lay.image(layers, compress=["none"],
                      layer_types=["application/vnd.oci.image.layer.v1.tar+zstd"]))
    with pytest.raises(ImageError, match="zstd-compressed, which is not supported"):
        open_image(tmp_path / "z")

    lay = Layout(tmp_path / "u")
    lay.add(lay.image(layers, compress=["none"], layer_types=["application/x-unknown"]))
    with pytest.raises(ImageError, match="unknown media type 'application/x-unknown'"):
        open_image(tmp_path / "u")

    lay = Layout(tmp_path / "n")
    lay.add(lay.image(layers, config_for(layers + layers), compress=["none"]))
    with pytest.raises(ImageError, match="config lists 2 diff_ids but the manifest has 1 layers"):
        open_image(tmp_path / "n")

    lay = Layout(tmp_path / "s")
    desc = lay.image(layers, compress=["none"])
    lay.add({**desc, "digest": "sha512:" + "0" * 128})
    with pytest.raises(ImageError, match="unsupported digest algorithm 'sha512'"):
        open_image(tmp_path / "s")

    lay = Layout(tmp_path / "m")
    lay.add(lay.image(layers, compress=["none"]))
    man = json.loads((tmp_path / "m/index.json").read_text())["manifests"][0]
    layer_digest = json.loads(blob_path(tmp_path / "m", man["digest"]).read_bytes())["layers"][0]["digest"]
    blob_path(tmp_path / "m", layer_digest).unlink()
    with open_image(tmp_path / "m") as img, pytest.raises(ImageError, match=r"blobs/sha256/.* is missing"):
        img.open_layer(img.layers[0])

    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="neither an OCI image layout"):
        open_image(tmp_path / "empty")
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 2000)
    with pytest.raises(ImageError, match="not a directory or a readable tar archive"):
        open_image(tmp_path / "junk.tar")


def test_docker_manifest_paths_must_stay_inside(tmp_path) -> None:
    import io
    import tarfile

    p = tmp_path / "evil.tar"
    with tarfile.open(p, "w") as t:
        data = jbytes([{"Config": "../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}])
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageError, match="not a path inside the archive"):
        open_image(p)


def test_docker_old_layer_tampered_caught_by_diff_id(tmp_path) -> None:
    """An old docker-save layer has no digest: the DiffID check (layers.py) is what catches it."""
    from ociruntime.image.layers import apply_layer

    layers = sample_layers()
    bad = bytearray(layers[0])
    bad[layers[0].index(b"root:x")] ^= 1  # inside a file's data: still a valid tar
    p = docker_save(tmp_path / "d.tar", [bytes(bad), *layers[1:]], config=config_for(layers))
    with open_image(p) as img, img.open_layer(img.layers[0]) as f:
        with pytest.raises(ImageError, match="DiffID mismatch"):
            apply_layer(f, tmp_path / "out", diff_id=img.layers[0].diff_id)
    assert not (tmp_path / "out").exists()


def test_fifo_in_layout_does_not_hang(tmp_path) -> None:
    layout = oci_layout(tmp_path / "l")
    (layout / "index.json").unlink()
    os.mkfifo(layout / "index.json")
    with pytest.raises(ImageError, match=r"index\.json is not a regular file"):
        open_image(layout)


def test_symlink_in_layout_stays_inside(tmp_path) -> None:
    layout = oci_layout(tmp_path / "l")
    (tmp_path / "outside.json").write_text('{"schemaVersion": 2, "manifests": []}')
    (layout / "index.json").unlink()
    (layout / "index.json").symlink_to(tmp_path / "outside.json")  # resolved inside the layout
    with pytest.raises(ImageError, match=r"neither an OCI image layout \(index\.json\)"):
        open_image(layout)
