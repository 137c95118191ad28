"""``ps``: the processes of a container, as host pids (json) or as lines of the host's ps(1).

Both views come from the cgroup, not from the pid namespace: cgroup membership is what
containerd and podman ask for (runc libcontainer ``Processes``), and it includes processes that
joined without sharing the init's namespaces.
"""

from __future__ import annotations

import subprocess

from ociruntime.errors import OCIError
from ociruntime.lifecycle.context import Context
from ociruntime.state.store import Store


def container_pids(ctx: Context, container_id: str) -> list[int]:
    """Every host pid in the container's cgroup (sorted; empty once it is gone)."""
    with Store(ctx.root).open(container_id) as cdir:
        rec = cdir.load()
        if not rec.cgroup:
            return []
        from ociruntime.cgroups import manager_from_state

        return manager_from_state(rec.cgroup).pids()


def pid_column(header: str) -> int:
    """Index of the ``PID`` column in a ps header line."""
    titles = header.split()
    if "PID" not in titles:
        raise OCIError("couldn't find PID field in ps output")
    return titles.index("PID")


def filter_table(output: str, pids: list[int]) -> str:
    """Keep ps's header and the lines whose PID column is one of ``pids`` (runc's ``ps``)."""
    lines = output.split("\n")
    index = pid_column(lines[0])
    wanted = set(pids)
    kept = [lines[0]]
    for line in lines[1:]:
        if not line:
            continue
        fields = line.split()
        try:
            pid = int(fields[index])
        except (IndexError, ValueError):
            raise OCIError(f"unable to parse pid from ps line {line!r}") from None
        if pid in wanted:
            kept.append(line)
    return "\n".join(kept) + "\n"


def ps_table(pids: list[int], ps_args: list[str]) -> str:
    """Run the host's ``ps`` (``-ef`` unless options are given) and keep the container's lines."""
    args = ps_args or ["-ef"]
    try:
        proc = subprocess.run(["ps", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=False)
    except OSError as e:
        raise OCIError(f"run ps: {e.strerror.lower() if e.strerror else e}") from None
    output = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise OCIError(f"ps {' '.join(args)}: exit status {proc.returncode}: {output.strip()}")
    return filter_table(output, pids)
