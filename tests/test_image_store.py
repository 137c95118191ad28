"""The layer store: once per ChainID, the same content from every format, nothing half-written."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from imagebuild import config_for, docker_save, oci_layout, sample_layers, sha, snapshot, tar_dir

from ociruntime.errors import ImageError
from ociruntime.image import layers as layers_mod
from ociruntime.image import store as store_mod
from ociruntime.image.source import open_image
from ociruntime.image.store import LayerStore

ROOT = os.geteuid() == 0


def state(root) -> dict[str, list[str]]:
    """What the store holds besides lock files."""
    out = {}
    for d in ("", ".tmp"):
        p = root / d
        out[d] = sorted(n for n in os.listdir(p) if n not in (".tmp", ".locks")) if p.exists() else []
    return out


@pytest.fixture
def count_extractions(monkeypatch):
    calls = []
    real = layers_mod.apply_layer

    def counting(*a, **kw):
        calls.append(kw.get("diff_id"))
        return real(*a, **kw)

    monkeypatch.setattr(store_mod, "apply_layer", counting)
    return calls


def test_three_formats_same_layers_same_content(tmp_path, count_extractions) -> None:
    layers = sample_layers()
    layout = oci_layout(tmp_path / "layout", layers)
    paths = {
        "oci-dir": layout,
        "oci-archive": tar_dir(layout, tmp_path / "oci.tar"),
        "docker-save": docker_save(tmp_path / "d.tar", layers),
        "docker-save-new": docker_save(tmp_path / "n.tar", layers, new_style=True),
        "podman-save": docker_save(tmp_path / "p.tar", layers, podman=True),
    }
    results = {}
    for kind, p in paths.items():
        store = LayerStore(tmp_path / f"store-{kind}")
        with open_image(p) as img:
            dirs = store.ensure_layers(img)
            assert [d.parent.name for d in dirs] == [c[7:] for c in img.chain_ids]
            results[kind] = [snapshot(d) for d in dirs]
            meta = store.metadata(img.chain_ids[1])
            assert meta is not None and meta["diff_id"] == sha(layers[1]) and meta["size"] == len(layers[1])
            wh = store.whiteouts(img.chain_ids[1])
            assert sorted((w["path"], w["kind"], w["applied"]) for w in wh) == [
                ("del/me", "file", ROOT), ("opt/data", "opaque", ROOT)]
    first = results.pop("oci-dir")
    for kind, snap in results.items():
        assert snap == first, kind
    assert len(count_extractions) == 5 * 3
    top = first[2]
    assert top["etc/hosts"][4] == b"127.0.0.1 localhost\n::1 localhost\n"
    assert ("user.test", b"yes") in top["etc/attr"][5]


def test_each_layer_extracted_once_shared(tmp_path, count_extractions) -> None:
    layers = sample_layers()
    store = LayerStore(tmp_path / "store")
    with open_image(oci_layout(tmp_path / "a", layers)) as img:
        first = store.ensure_layers(img)
    assert len(count_extractions) == 3
    # another image sharing the two bottom layers, and the same image from a docker save
    with open_image(oci_layout(tmp_path / "b", layers[:2])) as img:
        assert store.ensure_layers(img) == first[:2]
    with open_image(docker_save(tmp_path / "c.tar", layers)) as img:
        assert store.ensure_layers(img) == first
    assert len(count_extractions) == 3
    assert state(store.root) == {"": sorted(p.parent.name for p in first), ".tmp": []}


def test_same_diff_on_other_base_is_another_layer(tmp_path) -> None:
    layers = sample_layers()
    store = LayerStore(tmp_path / "store")
    with open_image(oci_layout(tmp_path / "a", layers[:2])) as a:
        da = store.ensure_layers(a)
    with open_image(oci_layout(tmp_path / "b", [layers[2], layers[1]])) as b:
        db = store.ensure_layers(b)
    assert da[1] != db[1]  # same DiffID, different ChainID


def test_tampered_blob_leaves_nothing(tmp_path) -> None:
    layout = oci_layout(tmp_path / "l")
    store = LayerStore(tmp_path / "store")
    with open_image(layout) as img:
        la = img.layers[2]  # gzip: flip a byte in the gzip trailer's CRC so decompression fails late
        p = layout / "blobs/sha256" / la.digest[7:]
        data = bytearray(p.read_bytes())
        data[-6] ^= 0xFF
        p.write_bytes(bytes(data))
        with pytest.raises(ImageError, match=r"image .*: layer 2 \(sha256:\w+\): "):
            store.ensure_layers(img)
    names = state(store.root)
    assert names[".tmp"] == []
    assert len(names[""]) == 2  # the two good layers below it are kept
    assert img.chain_ids[2][7:] not in names[""]


def test_tampered_uncompressed_blob_same_size(tmp_path) -> None:
    """Content changed, still a valid tar: the blob digest (checked at the end) refuses it."""
    layers = sample_layers()
    layout = oci_layout(tmp_path / "l", layers)
    store = LayerStore(tmp_path / "store")
    with open_image(layout) as img:
        la = img.layers[1]
        p = layout / "blobs/sha256" / la.digest[7:]
        p.write_bytes(p.read_bytes().replace(b"c\n", b"C\n"))
        with pytest.raises(ImageError, match=r"layer 1 \(sha256:\w+\): digest mismatch: blob is"):
            store.ensure_layer(img, la)
    assert state(store.root) == {"": [], ".tmp": []}


def test_wrong_diff_id_in_config_leaves_nothing(tmp_path) -> None:
    layers = sample_layers()
    cfg = config_for(layers)
    cfg["rootfs"]["diff_ids"][0] = sha(b"not the layer")
    p = docker_save(tmp_path / "d.tar", layers, config=cfg)
    store = LayerStore(tmp_path / "store")
    with open_image(p) as img, pytest.raises(ImageError, match=r"layer 0 .*DiffID mismatch"):
        store.ensure_layers(img)
    assert state(store.root) == {"": [], ".tmp": []}


def test_hostile_layer_leaves_nothing(tmp_path) -> None:
    from imagebuild import T

    evil = T().symlink("root", "/").file("root/tmp/evil-from-layer", b"x").bytes()
    store = LayerStore(tmp_path / "store")
    with open_image(oci_layout(tmp_path / "l", [evil])) as img, \
            pytest.raises(ImageError, match="root is a symlink or not a directory"):
        store.ensure_layers(img)
    assert state(store.root) == {"": [], ".tmp": []}
    assert not os.path.lexists("/tmp/evil-from-layer")


def test_leftovers_and_damage_repaired(tmp_path, count_extractions) -> None:
    layers = sample_layers()
    store = LayerStore(tmp_path / "store")
    with open_image(oci_layout(tmp_path / "l", layers)) as img:
        hexid = img.chain_ids[0][7:]
        # a killed extractor's temp dir, and an unrelated one of another chain
        store._prepare()
        (store.root / ".tmp" / f"{hexid}.999999.1" / "diff").mkdir(parents=True)
        (store.root / ".tmp" / f"{'e' * 64}.999999.1").mkdir()
        # a damaged published layer (no layer.json)
        (store.root / hexid / "diff").mkdir(parents=True)
        store.ensure_layer(img, img.layers[0])
        assert store.has(img.chain_ids[0])
        assert os.listdir(store.root / ".tmp") == [f"{'e' * 64}.999999.1"]
        assert store.clean_temp() == 1
        assert os.listdir(store.root / ".tmp") == []
    assert len(count_extractions) == 1


def test_concurrent_extractors_serialize(tmp_path, count_extractions) -> None:
    layers = sample_layers()
    layout = oci_layout(tmp_path / "l", layers[:1])
    store = LayerStore(tmp_path / "store")
    with open_image(layout) as img:
        lock = store_mod._Lock(store.root / ".locks" / img.chain_ids[0][7:])
        store._prepare()
        results = []
        with lock:
            t = threading.Thread(target=lambda: results.append(store.ensure_layers(img)))
            t.start()
            time.sleep(0.2)
            assert results == [] and count_extractions == []  # waiting for the lock
        t.join(10)
        assert results and len(count_extractions) == 1
        # clean_temp skips a chain whose lock is held
        (store.root / ".tmp" / f"{img.chain_ids[0][7:]}.1.1").mkdir()
        with store_mod._Lock(store.root / ".locks" / img.chain_ids[0][7:]):
            assert store.clean_temp() == 0
        assert store.clean_temp() == 1


def test_metadata_files(tmp_path) -> None:
    store = LayerStore(tmp_path / "store", durable=False)
    with open_image(oci_layout(tmp_path / "l")) as img:
        store.ensure_layers(img)
        meta = json.loads((store.layer_dir(img.chain_ids[0]) / "layer.json").read_text())
    assert meta["chain_id"] == img.chain_ids[0] and meta["diff_id"] == img.diff_ids[0]
    assert meta["digest"] == img.layers[0].digest and meta["compressed_size"] == img.layers[0].size
    assert meta["version"] == 1 and meta["warnings"] == []
    assert store.metadata("sha256:" + "0" * 64) is None
