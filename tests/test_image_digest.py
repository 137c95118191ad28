"""Digests, DiffIDs and ChainIDs, against values computed here with hashlib."""

from __future__ import annotations

import hashlib
import io

import pytest

from ociruntime.errors import ImageError, OCIError
from ociruntime.image import digest as d


def h(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_parse_valid() -> None:
    x = h(b"x")
    assert d.parse_digest(x) == x[7:]
    assert d.validate_digest(x) == x
    assert d.is_digest(x)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("sha512:" + "a" * 128, "unsupported digest algorithm 'sha512'"),
        ("md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("sha256:" + "a" * 63, "64 hex digits, not 63"),
        ("sha256:" + "a" * 65, "64 hex digits, not 65"),
        ("sha256:" + "A" * 64, "not lower-case hex"),
        ("sha256:" + "g" * 64, "not lower-case hex"),
        ("a" * 64, "not a digest"),
        ("", "not a digest"),
        (None, "expected a digest string"),
        (5, "expected a digest string"),
    ],
)
def test_parse_refused(value: object, fragment: str) -> None:
    with pytest.raises(ImageError) as e:
        d.parse_digest(value, "layer 1 digest")
    assert fragment in str(e.value)
    assert str(e.value).startswith("layer 1 digest")
    assert isinstance(e.value, OCIError)
    assert not d.is_digest(value)


def test_streaming_hash(tmp_path) -> None:
    data = bytes(range(256)) * 9000  # several chunks
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert d.sha256_file(p, chunk=4096) == h(data)
    assert d.sha256_stream(io.BytesIO(data), chunk=1000) == (h(data), len(data))
    assert d.sha256_bytes(b"") == h(b"")


def test_chain_ids_independent() -> None:
    diffs = [h(b"layer0"), h(b"layer1"), h(b"layer2")]
    # computed independently: the spec's recursion over the text forms
    c0 = diffs[0]
    c1 = "sha256:" + hashlib.sha256((c0 + " " + diffs[1]).encode()).hexdigest()
    c2 = "sha256:" + hashlib.sha256((c1 + " " + diffs[2]).encode()).hexdigest()
    assert d.chain_ids(diffs) == [c0, c1, c2]
    assert d.chain_ids([]) == []
    assert d.chain_ids(diffs[:1]) == [c0]


def test_chain_ids_known_vector() -> None:
    # The image spec's example (config.md "Layer ChainID"): the empty tar's DiffID twice.
    empty_tar = bytes(10240)
    l0 = h(empty_tar)
    assert l0 == "sha256:84ff92691f909a05b224e1c56abb4864f01b4f8e3c854e4bb4c7baf1d3f6d652"
    c1 = d.chain_ids([l0, l0])[1]
    assert c1 == "sha256:" + hashlib.sha256(f"{l0} {l0}".encode()).hexdigest()


def test_chain_ids_refuse_bad_diff_id() -> None:
    with pytest.raises(ImageError, match="unsupported digest algorithm"):
        d.chain_ids([h(b"a"), "sha512:" + "0" * 128])
