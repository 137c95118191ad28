"""``state`` and ``list``: read-only views of the state store."""

from __future__ import annotations

from ociruntime.errors import OCIError
from ociruntime.lifecycle.context import Context
from ociruntime.log import LOG
from ociruntime.state.store import StateCorrupt, Store


def state(ctx: Context, container_id: str) -> dict:
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        return rec.oci_state(cdir.status(rec))


# runc's list.go containerState, in its field order (Go encodes struct fields in order).
_LIST_KEYS = ("ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "annotations", "owner")


def list_entry(st: dict) -> dict:
    """One ``list --format json`` element: runc's keys and order; annotations are omitempty."""
    return {k: st[k] for k in _LIST_KEYS if k != "annotations" or st.get(k)}


def list_states(ctx: Context) -> list[dict]:
    out = []
    for cid in Store(ctx.root).ids():
        try:
            out.append(state(ctx, cid))
        except StateCorrupt as e:
            LOG.warning(str(e))  # not listed, but not silently either
        except OCIError:
            continue  # deleted concurrently, a create in progress, or one killed before saving
    return out
