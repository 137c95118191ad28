"""``python -I -m ociruntime``: the same entry point as the installed launcher."""

from ociruntime.cli.main import entry

entry()
