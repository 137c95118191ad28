"""A fast yes/no JSON-schema check of config, state and features documents.

``import jsonschema`` alone costs ~60 ms, paid by every ``create``.  Almost every config is
valid, and for a valid one only the verdict matters, not which error is "best".  This module
compiles our own schema files (``schemas/*.json``, draft 2020-12) into a tree of small closures,
once per process and kind, and answers :func:`is_valid`.  :func:`ociruntime.spec.schema.validate`
asks it first and runs jsonschema only to explain a rejection.

It implements exactly the keywords listed in :data:`SUPPORTED_KEYWORDS`, with jsonschema's
semantics as :mod:`ociruntime.spec.schema` configures it: ``integer`` is ``type(x) is int``
(Python's ``True`` and ``1.0`` are not integers), ``pattern`` is :func:`re.search`, ``enum`` and
``const`` compare like ``jsonschema._utils.equal`` (``True`` is not ``1``).  Any other keyword,
a nested ``$id``, an ``$anchor`` reference or a ``$schema`` other than 2020-12 raises
``OCIError`` while compiling, so a schema change cannot be skipped silently.  ``format`` is
refused too: jsonschema treats it as an annotation only when no format checker is set, and a
schema author adding it most likely wants it checked.

Only the standard library is used; ``urllib.parse`` is already loaded by ``site`` at start-up.
"""

from __future__ import annotations

import os

from ociruntime.errors import OCIError
from ociruntime.spec.schema import KINDS, find_schema_dir, read_schemas

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from typing import Any

    Check = Callable[[object], bool]


DRAFT = "https://json-schema.org/draft/2020-12/schema"

# Keywords that only carry information for people or for $ref targets: never evaluated.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "default", "examples",
     "deprecated", "readOnly", "writeOnly"}
)
OBJECT_KEYWORDS = frozenset(
    {"properties", "required", "additionalProperties", "patternProperties", "propertyNames"}
)
ARRAY_KEYWORDS = frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"})
STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern"})
NUMBER_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
# "then"/"else" act only through "if"; without one they are refused (see Compiler._compile).
GENERIC_KEYWORDS = frozenset({"enum", "const", "$ref", "allOf", "anyOf", "oneOf", "not", "if"})
SUPPORTED_KEYWORDS = (
    ANNOTATIONS
    | OBJECT_KEYWORDS
    | ARRAY_KEYWORDS
    | STRING_KEYWORDS
    | NUMBER_KEYWORDS
    | GENERIC_KEYWORDS
    | {"type", "then", "else"}
)

_checks: dict[str, Check] = {}
_compiler: list[Compiler] = []


def _join_ref(base: str, ref: str) -> str:
    """``urljoin(base, ref)`` for the refs our schemas use ("#/...", "defs.json#/..."), without
    importing urllib.parse (~5 ms on every create); anything else goes to urljoin."""
    head = ref.partition("#")[0]
    if not head:
        return base.partition("#")[0] + ref
    if ":" not in head and not head.startswith(("/", ".")) and "/." not in head:
        return base.partition("#")[0].rpartition("/")[0] + "/" + ref
    from urllib.parse import urljoin

    return urljoin(base, ref)


def _always(_x: object) -> bool:
    return True


def _never(_x: object) -> bool:
    return False


def _is_number(x: object) -> bool:
    # jsonschema: numbers.Number but not bool; the first test is the fast path for json's types.
    # JSON gives int and float only (numbers.Number would cost an import of `numbers`).
    return type(x) is int or type(x) is float or (not isinstance(x, bool) and isinstance(x, (int, float)))


TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    # schema.py redefines "integer" so that bools and floats such as 1.0 never pass as a uid.
    "integer": lambda x: type(x) is int,
    "number": _is_number,
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


def _equal(one: object, two: object) -> bool:
    """``jsonschema._utils.equal``: JSON equality, where ``True`` differs from ``1``."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return one == two
    # JSON arrays and objects are lists and dicts (tuples from our own schema code).
    if isinstance(one, (list, tuple)) and isinstance(two, (list, tuple)):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return len(one) == len(two) and all(k in two and _equal(v, two[k]) for k, v in one.items())
    if isinstance(one, bool) or isinstance(two, bool):
        return type(one) is type(two) and one == two
    return one == two


def _unique(items: Any) -> bool:
    """Every pair of elements differs under :func:`_equal` (``uniqueItems``).

    jsonschema's ``uniq`` sorts and compares neighbours only, so it misses the duplicate in
    ``[[1], [True], [1]]``; the exact answer here then makes ``validate`` report a disagreement
    instead of accepting.  No schema of ours uses uniqueItems today.
    """
    return all(not _equal(items[i], items[j]) for i in range(len(items)) for j in range(i))


def _all_of(checks: list[Check]) -> Check:
    """Conjunction, specialised for the short lists that nearly every schema node produces."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) and second(x)
    items = tuple(checks)

    def check(x: object) -> bool:
        for item in items:
            if not item(x):
                return False
        return True

    return check


def _guarded(kind: type, checks: list[Check], guard: bool) -> list[Check]:
    """Keywords that apply to one JSON type only; ``guard`` False when ``type`` already ensured it."""
    if not checks or not guard:
        return checks
    inner = _all_of(checks)
    return [lambda x: not isinstance(x, kind) or inner(x)]


class _Where:
    """A schema node's location, rendered as a JSON pointer only for a compile-time error."""

    __slots__ = ("file", "head", "parent", "parts")

    def __init__(
        self, file: str, head: str = "", parent: _Where | None = None, parts: tuple[str | int, ...] = ()
    ) -> None:
        self.file = file
        self.head = head
        self.parent = parent
        self.parts = parts

    def child(self, *parts: str | int) -> _Where:
        return _Where(self.file, "", self, parts)

    @property
    def pointer(self) -> str:
        head = self.parent.pointer if self.parent is not None else self.head
        return head + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in self.parts)

    def error(self, what: str) -> OCIError:
        return OCIError(f"json schema {self.file}#{self.pointer}: {what} (ociruntime.spec.fastcheck)")


class Compiler:
    """Load every schema file of a directory once and compile root schemas into closures.

    References are followed across files by ``$id`` (each file's root ``$id`` is its base URI),
    and each referenced location is compiled once: recursion is tied through a forward cell.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.docs: dict[str, Any] = {}
        self.ids: dict[str, str] = {}
        for name, path, doc in read_schemas(directory):
            if not isinstance(doc, dict) or not isinstance(doc.get("$id"), str):
                raise OCIError(f"schema {path}: no $id")
            base = doc["$id"].partition("#")[0]
            self.docs[base] = doc
            self.ids[name] = base
        self._names = {base: name for name, base in self.ids.items()}
        self._refs: dict[str, Check] = {}
        self._pending: dict[str, list[Check]] = {}
        self._joined: dict[tuple[str, str], str] = {}
        self._lazy: list[Callable[[], Check]] = []

    def root(self, file_name: str) -> Check:
        """The check for the root schema of ``file_name`` (e.g. ``config-schema.json``)."""
        if file_name not in self.ids:
            raise OCIError(f"json schema {file_name} not found")
        return self._target(self.ids[file_name], "")

    def compile_everything(self) -> int:
        """Compile every file's root and every ``$defs``/``definitions`` entry; return how many.

        Unreferenced definitions are otherwise never compiled, so this is how a test proves that
        no keyword anywhere in the schema files is unsupported.
        """
        count = 0
        for base, doc in self.docs.items():
            self._target(base, "")
            count += 1
            for container in ("$defs", "definitions"):
                for name in doc.get(container, {}):
                    self._target(base, _Where(base).child(container, name).pointer)
                    count += 1
        self.resolve_all()
        return count

    def resolve_all(self) -> None:
        """Compile every lazy ``$ref`` made so far and those they make, so errors show now."""
        done = 0
        while done < len(self._lazy):
            self._lazy[done]()
            done += 1

    def _target(self, base: str, pointer: str, referrer: _Where | None = None) -> Check:
        key = f"{base}#{pointer}"
        done = self._refs.get(key)
        if done is not None:
            return done
        cell = self._pending.get(key)
        if cell is not None:  # a reference cycle: call through the cell filled in below
            return lambda x: cell[0](x)
        self._pending[key] = cell = [_never]
        where = _Where(self._names.get(base, base), pointer)
        # A dangling $ref is reported where the $ref is written, not at the missing target.
        node = self._lookup(base, pointer, referrer or where)
        check = self._compile(node, base, where)
        cell[0] = check
        del self._pending[key]
        self._refs[key] = check
        return check

    def _lookup(self, base: str, pointer: str, where: _Where) -> object:
        """Follow a JSON pointer (RFC 6901) inside the document ``base``."""
        if base not in self.docs:
            raise where.error(f"$ref to unknown schema {base}")
        node: Any = self.docs[base]
        for token in pointer.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise where.error("$ref target does not exist")
        return node

    def _ref(self, ref: object, base: str, where: _Where) -> Check:
        if not isinstance(ref, str):
            raise where.error("$ref is not a string")
        # The same few refs recur hundreds of times, and urljoin costs ~5 us a call.
        joined = self._joined.get((base, ref))
        if joined is None:
            joined = self._joined[base, ref] = _join_ref(base, ref)
        target, _, fragment = joined.partition("#")
        if "%" in fragment:
            # referencing (jsonschema's resolver) percent-decodes the fragment before splitting
            # it; urllib.parse costs ~5 ms to import, so only when there is something to decode.
            from urllib.parse import unquote

            fragment = unquote(fragment)
        if fragment and not fragment.startswith("/"):
            raise where.error(f"$ref {ref!r}: anchors are not supported")
        if not fragment and "$schema" in self.docs.get(target, {}):
            # jsonschema's evolve() re-picks the validator class at a "$schema": below it the plain
            # draft 2020-12 class would check, without schema.py's strict integer.
            raise where.error(f"$ref {ref!r} to the root of a file that declares $schema is not supported")
        done = self._refs.get(f"{target}#{fragment}")
        if done is not None:
            return done
        # Compiled on first use: a config reaches a fraction of the schema (no windows, solaris,
        # vm or zos parts; few of linux's), and compiling all of it cost ~5 ms of every create.
        cell: list[Check] = []

        def resolve() -> Check:
            if not cell:
                cell.append(self._target(target, fragment, where))
            return cell[0]

        self._lazy.append(resolve)
        return lambda x: (cell[0] if cell else resolve())(x)

    def _compile(self, node: object, base: str, where: _Where) -> Check:
        if node is True:
            return _always
        if node is False:
            return _never
        if not isinstance(node, dict):
            raise where.error("a schema must be an object or a boolean")
        unknown = node.keys() - SUPPORTED_KEYWORDS
        if unknown:
            raise where.error(f"unsupported keyword(s) {', '.join(sorted(unknown))}")
        if "$schema" in node and node["$schema"] != DRAFT:
            raise where.error(f"$schema {node['$schema']!r} is not {DRAFT}")
        for key in ("$id", "$schema"):
            # $id would change the base URI of relative refs; $schema: see _ref.
            if key in node and where.pointer:
                raise where.error(f"{key} below the root of a file is not supported")
        if "if" not in node and ("then" in node or "else" in node):
            raise where.error("then/else without if (jsonschema would ignore them)")

        # Compile-time cost matters as much as check time (both are paid once per `create`), so
        # each keyword group is looked at only when the node uses one of its keywords.
        keys = node.keys()
        types = self._types(node, where)
        checks: list[Check] = []
        if types is not None:
            checks.append(_any_type(types))
        only = types[0] if types is not None and len(types) == 1 else None
        if not keys.isdisjoint(OBJECT_KEYWORDS):
            checks.extend(_guarded(dict, self._object(node, base, where), only != "object"))
        if not keys.isdisjoint(ARRAY_KEYWORDS):
            checks.extend(_guarded(list, self._array(node, base, where), only != "array"))
        if not keys.isdisjoint(STRING_KEYWORDS):
            checks.extend(_guarded(str, _string(node, where), only != "string"))
        if not keys.isdisjoint(NUMBER_KEYWORDS):
            checks.append(self._numeric(node, where, only in ("integer", "number")))
        if not keys.isdisjoint(GENERIC_KEYWORDS):
            checks.extend(self._generic(node, base, where))
        return _all_of(checks)

    @staticmethod
    def _types(node: dict[str, Any], where: _Where) -> list[str] | None:
        if "type" not in node:
            return None
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not types:
            raise where.child("type").error("type must not be an empty list")
        for name in types:
            if name not in TYPES:
                raise where.child("type").error(f"unknown type {name!r}")
        return types

    def _object(self, node: dict[str, Any], base: str, where: _Where) -> list[Check]:
        checks: list[Check] = []
        required = node.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise where.child("required").error("required must be a list of strings")
        props = {
            name: self._compile(sub, base, where.child("properties", name))
            for name, sub in _mapping(node, "properties", where).items()
        }
        patterns = []
        for pat, sub in _mapping(node, "patternProperties", where).items():
            at = where.child("patternProperties", pat)
            patterns.append((_regex(pat, at), self._compile(sub, base, at)))
        additional = (
            self._compile(node["additionalProperties"], base, where.child("additionalProperties"))
            if "additionalProperties" in node
            else None
        )
        # jsonschema decides "additional" with the patterns joined by "|" (find_additional_properties).
        joined = _regex("|".join(_mapping(node, "patternProperties", where)), where) if patterns else None
        names = (
            self._compile(node["propertyNames"], base, where.child("propertyNames"))
            if "propertyNames" in node
            else None
        )
        if required:
            checks.append(_required(tuple(required)))
        if names is not None:
            checks.append(_keys(names))
        if props or patterns or additional is not None:
            checks.append(_members(props, patterns, additional, joined))
        return checks

    def _array(self, node: dict[str, Any], base: str, where: _Where) -> list[Check]:
        checks: list[Check] = []
        prefix_nodes = node.get("prefixItems", [])
        if not isinstance(prefix_nodes, list):
            raise where.child("prefixItems").error("prefixItems must be a list")
        prefix = tuple(
            self._compile(sub, base, where.child("prefixItems", i)) for i, sub in enumerate(prefix_nodes)
        )
        if isinstance(node.get("items"), list):
            raise where.child("items").error("items must be a schema in draft 2020-12")
        rest = self._compile(node["items"], base, where.child("items")) if "items" in node else None
        if prefix or rest is not None:
            checks.append(_elements(prefix, rest))
        low = _count(node, "minItems", where)
        high = _count(node, "maxItems", where)
        checks.extend(_lengths(low, high))
        if node.get("uniqueItems") is True:
            checks.append(_unique)
        elif node.get("uniqueItems", False) is not False:
            raise where.child("uniqueItems").error("uniqueItems must be a boolean")
        return checks

    @staticmethod
    def _numeric(node: dict[str, Any], where: _Where, typed: bool) -> Check:
        bounds = {}
        for key in sorted(NUMBER_KEYWORDS & node.keys()):
            value = node[key]
            if not _is_number(value):
                raise where.child(key).error(f"{key} must be a number")
            bounds[key] = value
        low, high = bounds.get("minimum"), bounds.get("maximum")
        xlow, xhigh = bounds.get("exclusiveMinimum"), bounds.get("exclusiveMaximum")

        def within(x: Any) -> bool:
            return (
                (low is None or not x < low)
                and (high is None or not x > high)
                and (xlow is None or not x <= xlow)
                and (xhigh is None or not x >= xhigh)
            )

        if typed:
            return within
        return lambda x: not _is_number(x) or within(x)

    def _generic(self, node: dict[str, Any], base: str, where: _Where) -> list[Check]:
        checks: list[Check] = []
        if "enum" in node:
            checks.append(_enum(node["enum"], where.child("enum")))
        if "const" in node:
            const = node["const"]
            checks.append(lambda x: _equal(x, const))
        if "$ref" in node:
            checks.append(self._ref(node["$ref"], base, where.child("$ref")))
        for key in ("allOf", "anyOf", "oneOf"):
            if key not in node:
                continue
            subs = node[key]
            if not isinstance(subs, list) or not subs:
                raise where.child(key).error(f"{key} must be a non-empty list")
            parts = [self._compile(s, base, where.child(key, i)) for i, s in enumerate(subs)]
            checks.append(_combinator(key, parts))
        if "not" in node:
            negated = self._compile(node["not"], base, where.child("not"))
            checks.append(lambda x: not negated(x))
        if "if" in node:
            checks.append(self._conditional(node, base, where))
        return checks

    def _conditional(self, node: dict[str, Any], base: str, where: _Where) -> Check:
        condition = self._compile(node["if"], base, where.child("if"))
        then = self._compile(node["then"], base, where.child("then")) if "then" in node else _always
        otherwise = self._compile(node["else"], base, where.child("else")) if "else" in node else _always
        return lambda x: then(x) if condition(x) else otherwise(x)


def _mapping(node: dict[str, Any], key: str, where: _Where) -> dict[str, Any]:
    value = node.get(key, {})
    if not isinstance(value, dict):
        raise where.child(key).error(f"{key} must be an object")
    return value


def _regex(pattern: object, where: _Where) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise where.error("a pattern must be a string")
    import re  # only for a pattern without a hand-written matcher (_MATCHERS): ~4 ms

    try:
        return re.compile(pattern)
    except re.error as exc:
        raise where.error(f"bad pattern {pattern!r}: {exc}") from None


# Hand-written equivalents of the patterns every config reaches (rlimit types, ociVersion, and
# memBwSchema, compiled with `linux`), so
# a create does not import `re` (with enum and functools, ~4 ms) to check them.  Each behaves
# exactly as ``re.search(pattern, x) is not None`` — "$" included, which also matches before a
# final "\n" (tests/test_spec_fastcheck.py compares them with `re` on generated strings).
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_SEMVER_IDENT = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-")
SEMVER_PATTERN = (r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?"
                  r"(\+[0-9A-Za-z.-]+)?$")
RLIMIT_PATTERN = "^RLIMIT_[A-Z]+$"
MEMBW_PATTERN = "^MB:[^\\n]*$"  # intelRdt.memBwSchema: compiled with linux, whether set or not


def _before_final_newline(x: str) -> str:
    return x[:-1] if x.endswith("\n") else x


def _rlimit_type(x: str) -> bool:
    s = _before_final_newline(x)
    return len(s) > 7 and s.startswith("RLIMIT_") and _UPPER.issuperset(s[7:])


def _number(part: str) -> bool:
    return part == "0" or (part[:1] in ("1", "2", "3", "4", "5", "6", "7", "8", "9")
                           and _DIGITS.issuperset(part))


def _semver(x: str) -> bool:
    core, plus, build = _before_final_newline(x).partition("+")
    if plus and not (build and _SEMVER_IDENT.issuperset(build)):
        return False
    core, dash, pre = core.partition("-")
    if dash and not (pre and _SEMVER_IDENT.issuperset(pre)):
        return False
    parts = core.split(".")
    return len(parts) == 3 and all(_number(p) for p in parts)


def _membw_schema(x: str) -> bool:
    return x.startswith("MB:") and "\n" not in _before_final_newline(x)[3:]


_MATCHERS: dict[str, Check] = {RLIMIT_PATTERN: _rlimit_type, SEMVER_PATTERN: _semver,  # type: ignore[dict-item]
                               MEMBW_PATTERN: _membw_schema}


def _count(node: dict[str, Any], key: str, where: _Where) -> int | None:
    if key not in node:
        return None
    value = node[key]
    if type(value) is not int or value < 0:
        raise where.child(key).error(f"{key} must be a non-negative integer")
    return value


def _lengths(low: int | None, high: int | None) -> list[Check]:
    """minItems/maxItems or minLength/maxLength, on a value already known to be a list or string."""
    checks: list[Check] = []
    if low is not None:

        def long_enough(x: Any) -> bool:
            return len(x) >= low

        checks.append(long_enough)
    if high is not None:

        def short_enough(x: Any) -> bool:
            return len(x) <= high

        checks.append(short_enough)
    return checks


def _any_type(types: list[str]) -> Check:
    if len(types) == 1:
        return TYPES[types[0]]
    preds = tuple(TYPES[t] for t in types)
    return lambda x: any(p(x) for p in preds)


def _string(node: dict[str, Any], where: _Where) -> list[Check]:
    checks: list[Check] = []
    low = _count(node, "minLength", where)
    high = _count(node, "maxLength", where)
    # len() counts code points, as JSON Schema requires (and as jsonschema does).
    checks.extend(_lengths(low, high))
    if "pattern" in node:
        # re.search, not fullmatch: JSON Schema patterns are unanchored.  Note that "$" also
        # matches before a final "\n", exactly as in jsonschema, which uses re.search too.
        known = _MATCHERS.get(node["pattern"]) if isinstance(node["pattern"], str) else None
        if known is not None:
            checks.append(known)
        else:
            search = _regex(node["pattern"], where.child("pattern")).search

            def matches(x: Any) -> bool:
                return search(x) is not None

            checks.append(matches)
    return checks


def _keys(names: Check) -> Check:
    def check(x: Any) -> bool:
        for key in x:
            if not names(key):
                return False
        return True

    return check


def _required(names: tuple[str, ...]) -> Check:
    def check(x: Any) -> bool:
        for name in names:
            if name not in x:
                return False
        return True

    return check


def _members(
    props: dict[str, Check],
    patterns: list[tuple[re.Pattern[str], Check]],
    additional: Check | None,
    joined: re.Pattern[str] | None,
) -> Check:
    """``properties``/``patternProperties``/``additionalProperties``, in one pass over the members."""
    lookup = props.get
    if not patterns and additional is None:

        def simple(x: Any) -> bool:
            for key, value in x.items():
                sub = lookup(key)
                if sub is not None and not sub(value):
                    return False
            return True

        return simple

    pairs = tuple(patterns)

    def full(x: Any) -> bool:
        for key, value in x.items():
            sub = lookup(key)
            if sub is not None:
                if not sub(value):
                    return False
            elif additional is not None and (joined is None or joined.search(key) is None):
                if not additional(value):
                    return False
            for regex, pattern_sub in pairs:
                if regex.search(key) is not None and not pattern_sub(value):
                    return False
        return True

    return full


def _elements(prefix: tuple[Check, ...], rest: Check | None) -> Check:
    n = len(prefix)
    if not prefix and rest is not None:
        each = rest

        def every(x: Any) -> bool:
            for item in x:
                if not each(item):
                    return False
            return True

        return every

    def check(x: Any) -> bool:
        for sub, item in zip(prefix, x, strict=False):
            if not sub(item):
                return False
        return rest is None or all(map(rest, x[n:]))

    return check


def _enum(values: object, where: _Where) -> Check:
    if not isinstance(values, list) or not values:
        raise where.error("enum must be a non-empty list")
    if all(isinstance(v, str) for v in values):
        # Under _equal a string only ever equals an equal string: a set lookup is exact.
        strings = frozenset(values)
        return lambda x: isinstance(x, str) and x in strings
    options = tuple(values)
    return lambda x: any(_equal(x, v) for v in options)


def _combinator(key: str, parts: list[Check]) -> Check:
    if key == "allOf":
        return _all_of(parts)
    if key == "anyOf":
        return lambda x: any(p(x) for p in parts)
    return lambda x: sum(1 for p in parts if p(x)) == 1


def compile_kind(kind: str, directory: str | os.PathLike[str] | None = None, *,
                 eager: bool = False) -> Check:
    """Compile, uncached, the check for ``kind`` from ``directory`` (default: the schema dir).

    ``eager``: also compile everything the root reaches through ``$ref`` now (normally on first
    use), so a broken reachable definition is reported here.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown schema kind {kind!r}")
    compiler = Compiler(directory or find_schema_dir())
    check = compiler.root(KINDS[kind][0])
    if eager:
        compiler.resolve_all()
    return check


def is_valid(doc: object, kind: str = "config") -> bool:
    """True when ``doc`` satisfies the ``kind`` schema; compiled on first use, then cached."""
    check = _checks.get(kind)
    if check is None:
        if kind not in KINDS:
            raise ValueError(f"unknown schema kind {kind!r}")
        # One compiler per process: the files are read once and shared $defs compiled once.
        if not _compiler:
            _compiler.append(Compiler(find_schema_dir()))
        check = _checks[kind] = _compiler[0].root(KINDS[kind][0])
    return check(doc)
