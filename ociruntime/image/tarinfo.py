"""tarfile's header parsing with a bound on metadata headers.

tarfile reads a pax extended header, a GNU long name or a long link target whole into memory
(``self._block(self.size)``) before we see the member it describes, so a hostile archive could
declare a multi-gigabyte name.  ``BoundedTarInfo`` refuses such a header before reading it;
passing ``tarinfo=BoundedTarInfo`` to ``tarfile.open`` puts every header of the archive (the
nested ones too: tarfile re-enters through ``cls.fromtarfile``) under the bound.
"""

from __future__ import annotations

import tarfile

from ociruntime.errors import ImageError

# Far above anything real: a pax header holds a path, a link target and a few xattrs.
MAX_META_HEADER = 1 << 20

_META_TYPES = frozenset({
    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
})


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses metadata headers larger than MAX_META_HEADER."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in _META_TYPES and self.size > MAX_META_HEADER:
            raise ImageError(f"tar metadata header of {self.size} bytes at offset {self.offset} "
                             f"(limit {MAX_META_HEADER})")
        return super()._proc_member(tarfile_)  # type: ignore[misc]
