"""``state`` and ``list``: read-only views of the state store."""

from __future__ import annotations

from ociruntime.errors import OCIError
from ociruntime.lifecycle.context import Context
from ociruntime.state.store import Store


def state(ctx: Context, container_id: str) -> dict:
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        return rec.oci_state(cdir.status(rec))


def list_states(ctx: Context) -> list[dict]:
    out = []
    for cid in Store(ctx.root).ids():
        try:
            out.append(state(ctx, cid))
        except OCIError:
            continue  # deleted concurrently, or a create still in progress
    return out
