"""Import guard for forked children.

After pivot_root (or setns into a mount namespace) every ``sys.path`` entry names a file inside
the container image, so a lazy import would execute image-controlled code as root.  The parent
imports everything the children need before fork; the children install this guard first thing,
turning any import of a module not already loaded into an error instead of a file lookup.
"""

from __future__ import annotations

import sys

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType


class _BlockImports:
    """A meta path finder that refuses every import not satisfied by ``sys.modules``."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        raise ImportError(f"import of {name!r} blocked in container init")


def block_imports() -> None:
    """Install the guard and drop path hooks so nothing consults the file system for modules."""
    sys.meta_path.insert(0, _BlockImports())  # type: ignore[arg-type]
    sys.path_importer_cache.clear()
    sys.path[:] = []
