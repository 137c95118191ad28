"""Seccomp for the runtime: compile the spec profile to BPF in the parent, hand the notify fd on.

``compile`` (profile → cached BPF, imports pyseccomp on a cache miss only) is used by
create/run/exec; ``notify`` (send the listener fd to ``listenerPath``) is stdlib only.  The child
side, loading the bytes, lives in ``ociruntime.linux.seccomp``.  Nothing is imported here so that
importing one part never pulls in the other.
"""
