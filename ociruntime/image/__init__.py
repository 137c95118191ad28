"""Images: from an OCI layout or archive to a bundle (issue 9).

* ``digest``  -- ``sha256:<hex>`` digests, streaming hashes, ChainIDs
* ``source``  -- open an image (OCI layout directory, oci-archive, docker/podman save tar): its
  verified config and layer list
* ``blobs``   -- the bytes of a source (directory files or tar members), read verified
* ``refs``    -- image names: normalization, choosing one image of a source
* ``tarinfo`` -- tarfile headers with a bound on metadata size
* ``layers``  -- apply one layer tar into a fresh directory, hostile-input safe, whiteouts in
  overlayfs form
* ``store``   -- the layer store: each layer extracted once, keyed by its ChainID
* ``runspec`` -- the image config -> the bundle's config.json (conversion.md), User resolved in
  the rootfs's /etc/passwd and /etc/group without leaving it; the image's volume paths
* ``flatten`` -- copy mode: the layers' overlay view written as one plain tree (no symlink of
  the image ever followed), and a safe tree copy for seeding volumes
* ``overlay`` -- the bundle's rootfs as an overlayfs mount of the layers (long stacks via links)
* ``volumes`` -- named, bind, tmpfs and anonymous volumes; seeding from the image
* ``bundle``  -- ``bundle create|delete|list``: all of the above, in order, with undo

Nothing on the runtime's lifecycle paths (cli, lifecycle, init) imports this package (only the
``bundle`` command's own module does, when chosen): it is
pure Python with the standard library (hashlib, tarfile, gzip), which those paths must not pay for.
"""
