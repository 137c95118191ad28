"""Thin wrappers over Linux system calls, one module per kernel concern.

Every wrapper raises ``OSError(errno, strerror, path)`` naming the call and its target; no
wrapper prints, retries or swallows errors.  Nothing here imports heavy third-party modules.
"""
