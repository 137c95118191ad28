"""Images: reading OCI layouts and archives, and the layer store (first half of issue 9).

* ``digest``  -- ``sha256:<hex>`` digests, streaming hashes, ChainIDs
* ``source``  -- open an image (OCI layout directory, oci-archive, docker/podman save tar): its
  verified config and layer list
* ``blobs``   -- the bytes of a source (directory files or tar members), read verified
* ``refs``    -- image names: normalization, choosing one image of a source
* ``tarinfo`` -- tarfile headers with a bound on metadata size
* ``layers``  -- apply one layer tar into a fresh directory, hostile-input safe, whiteouts in
  overlayfs form
* ``store``   -- the layer store: each layer extracted once, keyed by its ChainID
* ``flatten`` -- copy mode: the layers' overlay view written as one plain tree (no symlink of
  the image ever followed), and a safe tree copy for seeding volumes

Nothing on the runtime's lifecycle paths (cli, lifecycle, init) imports this package: it is
pure Python with the standard library (hashlib, tarfile, gzip), which those paths must not pay for.
"""
