"""A small command-line parser with runc's (Go ``flag`` / urfave-cli) grammar.

Why not argparse: runc's clients use Go conventions that argparse does not accept — single-dash
long options (``-no-subreaper``), boolean flags written ``--detach=true`` — and flag parsing stops
at the first positional argument (``exec ID sh -c ...`` must not eat ``-c``); ``reorder_args``
first moves a command's own flags in front, as runc's urfave/cli v1 does (``delete ID --force``).
This parser is a table of ``Flag`` definitions per command and costs nothing to import.
"""

from __future__ import annotations

from ociruntime.errors import UsageError

# Plain classes, not dataclasses: `dataclasses` imports `inspect` (~7 ms), and this module is on
# the path of every command.


class Flag:
    """One option.  ``kind`` is "bool", "str", "int" or "list" (repeatable string)."""

    __slots__ = ("aliases", "default", "help", "kind", "name")

    def __init__(self, name: str, kind: str = "bool", aliases: tuple[str, ...] = (),
                 default: object = None, help: str = "") -> None:
        self.name = name
        self.kind = kind
        self.aliases = aliases
        self.default = default
        self.help = help

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


class Parsed:
    """The result: option values by ``dest`` and the remaining positional arguments."""

    def __init__(self) -> None:
        self.opts: dict[str, object] = {}
        self.args: list[str] = []

    def __getattr__(self, name: str) -> object:
        try:
            return self.opts[name]
        except KeyError:
            raise AttributeError(name) from None


_TRUE = {"1", "t", "true", "yes", "on"}
_FALSE = {"0", "f", "false", "no", "off"}


def _parse_bool(name: str, value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UsageError(f'invalid boolean value "{value}" for flag -{name}')


def parse(argv: list[str], flags: list[Flag], *, stop_at_positional: bool = True) -> Parsed:
    """Parse ``argv`` against ``flags``.

    ``--name value``, ``--name=value``, ``-name value`` and ``-name=value`` are all accepted;
    single-letter aliases may be written ``-b value``.  ``--`` ends option parsing.
    """
    table: dict[str, Flag] = {}
    for f in flags:
        table[f.name] = f
        for a in f.aliases:
            table[a] = f
    out = Parsed()
    for f in flags:
        out.opts[f.dest] = list(f.default or []) if f.kind == "list" else f.default
        if f.kind == "bool" and f.default is None:
            out.opts[f.dest] = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.args.extend(argv[i + 1 :])
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                out.args.extend(argv[i:])
                break
            out.args.append(arg)
            i += 1
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        f = table.get(name)
        if f is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if f.kind == "bool":
            out.opts[f.dest] = _parse_bool(name, value) if eq else True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"flag needs an argument: -{name}")
            value = argv[i + 1]
            i += 1
        i += 1
        if f.kind == "int":
            try:
                out.opts[f.dest] = int(value, 10)
            except ValueError:
                raise UsageError(f'invalid value "{value}" for flag -{name}: parse error') from None
        elif f.kind == "list":
            out.opts[f.dest].append(value)  # type: ignore[union-attr]
        else:
            out.opts[f.dest] = value
    return out


def _names_flag(arg: str, table: set[str]) -> bool:
    """Whether ``arg`` spells one of the command's own flags (``-x``, ``--name``, ``--name=v``)."""
    if arg in ("-", "--") or not arg.startswith("-"):
        return False
    return arg.lstrip("-").partition("=")[0] in table


def reorder_args(argv: list[str], flags: list[Flag]) -> list[str]:
    """Move the command's own flags in front of its positional arguments, as runc does.

    runc's commands (urfave/cli v1 ``reorderArgs``; every command but ``exec`` and ``ps``, which
    set ``SkipArgReorder``) accept flags after the container id: ``delete ID --force``,
    ``update ID --memory 1M``.  The rules are cli's, quirks included: only names of this
    command's flags move (an unknown ``-x`` stays a positional argument); a flag written
    without ``=`` takes the next argument along unless that is a flag too, even a boolean one
    (so ``kill ID --all KILL`` becomes ``--all KILL ID``: runc then reads KILL as the id);
    nothing after ``--`` moves, and ``--`` goes in front of the positional arguments.
    """
    table = {name for f in flags for name in (f.name, *f.aliases)}
    moved: list[str] = []
    rest: list[str] = []
    may_be_value = False
    for i, arg in enumerate(argv):
        if may_be_value and not _names_flag(arg, table):
            may_be_value = False
            moved.append(arg)
        elif arg == "--":
            rest = ["--", *rest, *argv[i + 1 :]]
            break
        elif _names_flag(arg, table):
            moved.append(arg)
            may_be_value = "=" not in arg
        else:
            rest.append(arg)
    return moved + rest


def usage_text(command: str, synopsis: str, flags: list[Flag]) -> str:
    """Render ``--help`` output for one command."""
    lines = [f"usage: ociruntime {command} {synopsis}".rstrip(), "", "options:"]
    for f in flags:
        names = ", ".join(["--" + f.name] + [("-" if len(a) == 1 else "--") + a for a in f.aliases])
        arg = "" if f.kind == "bool" else " value"
        lines.append(f"  {names}{arg}\t{f.help}")
    return "\n".join(lines) + "\n"
