"""Regex -> byte-level DFA, bounded.

interegular parses the pattern (Python/ECMA-style syntax); we do our own construction
from its syntax tree because we need (a) transitions on UTF-8 *bytes*, so tokens that split
a character can be checked, and (b) hard bounds on NFA size, DFA states and time, so an
exploding pattern raises :class:`ConstraintTooLarge` quickly instead of hanging.

Semantics: full match.  ``\\d``, ``\\w``, ``\\s`` and ``\\b``-free classes are ASCII, as in
ECMA-262 (JSON Schema's dialect) and Python's ``re.ASCII``; ``.`` excludes ``\\n`` unless the
``s`` flag is on.  ``^`` at the very start and ``$`` at the very end are accepted and ignored
(they are implied); anchors elsewhere, look-arounds and back-references raise
:class:`RegexError`.  ``\\uXXXX``/``\\UXXXXXXXX``/``\\x{...}`` escapes are accepted.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import interegular
import numpy as np
from interegular import patterns as ip

from constrain.automata.bytedfa import DEFAULT_MAX_STATES, ByteDFA
from constrain.automata.utf8 import (
    Range,
    chars_to_ranges,
    complement_ranges,
    normalize_ranges,
    utf8_sequences,
)
from constrain.errors import ConstraintTooLarge, RegexError

DEFAULT_MAX_NFA_STATES = 400_000
DEFAULT_TIMEOUT_S = 10.0

_DOT_TYPE = type(ip._DOT)
_EMPTY_TYPE = type(ip._EMPTY)


@dataclass(frozen=True)
class Regex:
    """A regex constraint: the pattern and its byte DFA (vocabulary independent)."""

    pattern: str
    dfa: ByteDFA = field(compare=False, repr=False)


def regex(pattern: str, *, max_states: int = DEFAULT_MAX_STATES) -> Regex:
    """Compile ``pattern`` into a :class:`Regex` constraint (full-match semantics)."""
    return Regex(pattern, regex_to_dfa(pattern, max_states=max_states))


_CACHE: dict[tuple[str, int], ByteDFA] = {}


def regex_to_dfa(
    pattern: str,
    *,
    max_states: int = DEFAULT_MAX_STATES,
    max_nfa_states: int = DEFAULT_MAX_NFA_STATES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    minimize: bool = True,
) -> ByteDFA:
    """The minimal trimmed byte DFA of ``pattern``; bounded in states and time."""
    if not isinstance(pattern, str):
        raise RegexError(f"expected a str pattern, got {type(pattern).__name__}", repr(pattern))
    key = (pattern, max_states)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    deadline = time.monotonic() + timeout_s
    tree = parse(pattern)
    nfa = _NFA(max_nfa_states, pattern)
    s, e = nfa.build(tree, ip.REFlags(0))
    nfa.accept = e
    dfa = nfa.determinize(s, max_states, deadline)
    if minimize:
        dfa = dfa.minimize()
    if len(_CACHE) > 4096:
        _CACHE.clear()
    _CACHE[key] = dfa
    return dfa


def clear_cache() -> None:
    """Forget compiled regexes (benchmarks measure cold compiles with this)."""
    _CACHE.clear()


# ---- parsing ------------------------------------------------------------------------------

_ESCAPE_U = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|x\{[0-9A-Fa-f]{1,6}\})")


def _literal_for(cp: int) -> str:
    c = chr(cp)
    if c.isalnum() and cp < 0x80:
        return c
    if cp < 0x100:
        return f"\\x{cp:02x}"
    return c if c.isalnum() else "\\" + c


def _preprocess(pattern: str) -> str:
    """Rewrite escapes interegular lacks and strip the implied outer anchors."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            m = _ESCAPE_U.match(pattern, i)
            if m:
                body = m.group(1)
                hexdigits = body[1:].strip("{}")
                out.append(_literal_for(int(hexdigits, 16)))
                i = m.end()
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        out.append(ch)
        i += 1
    text = "".join(out)
    if text.startswith("^"):
        text = text[1:]
    if text.endswith("$") and not _escaped_at(text, len(text) - 1):
        text = text[:-1]
    return text


def _escaped_at(text: str, idx: int) -> bool:
    k = 0
    j = idx - 1
    while j >= 0 and text[j] == "\\":
        k += 1
        j -= 1
    return k % 2 == 1


def parse(pattern: str):
    """interegular's syntax tree of ``pattern``, with errors mapped to :class:`RegexError`."""
    try:
        re.compile(pattern)
    except re.error as exc:
        if "bad escape \\u" not in str(exc) and "bad escape \\x" not in str(exc):
            raise RegexError(f"invalid regex: {exc.msg}", pattern, exc.pos) from None
    except (OverflowError, RecursionError) as exc:
        raise RegexError(f"invalid regex: {exc}", pattern) from None
    text = _preprocess(pattern)
    try:
        return interegular.parse_pattern(text)
    except ip.Unsupported as exc:
        raise RegexError(f"unsupported construct: {exc}", pattern) from None
    except ip.InvalidSyntax as exc:
        raise RegexError(f"invalid regex: {exc}", pattern) from None
    except Exception as exc:  # interegular's parser signals some syntax errors as bare exceptions
        raise RegexError(f"cannot parse regex ({type(exc).__name__}: {exc})", pattern) from None


# ---- Thompson construction over UTF-8 bytes --------------------------------------------------


class _NFA:
    """Epsilon-NFA whose labelled edges are byte ranges."""

    def __init__(self, max_states: int, pattern: str) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[int, int, int]]] = []
        self.max_states = max_states
        self.pattern = pattern
        self.accept = -1
        self._seq_cache: dict[tuple[Range, ...], list[list[Range]]] = {}

    def new(self) -> int:
        if len(self.eps) >= self.max_states:
            raise ConstraintTooLarge(
                f"regex {self.pattern!r} needs more than {self.max_states} NFA states "
                "(large bounded repetition?)",
                limit="max_nfa_states",
            )
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def ranges_fragment(self, ranges: list[Range]) -> tuple[int, int]:
        s, e = self.new(), self.new()
        key = tuple(ranges)
        seqs = self._seq_cache.get(key)
        if seqs is None:
            seqs = [seq for lo, hi in ranges for seq in utf8_sequences(lo, hi)]
            self._seq_cache[key] = seqs
        # share prefixes of byte-range sequences so the NFA stays small
        trie: dict[tuple[Range, ...], int] = {(): s}
        for seq in seqs:
            cur = s
            for k, (lo, hi) in enumerate(seq):
                last = k == len(seq) - 1
                if last:
                    self.edges[cur].append((lo, hi, e))
                else:
                    pref = tuple(seq[: k + 1])
                    nxt = trie.get(pref)
                    if nxt is None:
                        nxt = self.new()
                        trie[pref] = nxt
                        self.edges[cur].append((lo, hi, nxt))
                    cur = nxt
        return s, e

    def build(self, node, flags) -> tuple[int, int]:
        if isinstance(node, ip.Pattern):
            flags = ip._combine_flags(flags, node.added_flags, node.removed_flags)
            if len(node.options) == 1:
                return self.build(node.options[0], flags)
            s, e = self.new(), self.new()
            for opt in node.options:
                os_, oe = self.build(opt, flags)
                self.eps[s].append(os_)
                self.eps[oe].append(e)
            return s, e
        if isinstance(node, ip._Concatenation):
            s = e = self.new()
            for part in node.parts:
                if isinstance(part, ip._NonCapturing):
                    raise RegexError("look-around assertions are not supported", self.pattern)
                ps, pe = self.build(part, flags)
                self.eps[e].append(ps)
                e = pe
            return s, e
        if isinstance(node, ip._Repeated):
            lo, hi = node.min, node.max
            if hi is not None and hi < lo:
                raise RegexError(f"bad repetition {{{lo},{hi}}}", self.pattern)
            s = e = self.new()
            for _ in range(lo):
                ps, pe = self.build(node.base, flags)
                self.eps[e].append(ps)
                e = pe
            if hi is None:
                ps, pe = self.build(node.base, flags)
                loop = self.new()
                self.eps[e].append(loop)
                self.eps[loop].append(ps)
                self.eps[pe].append(loop)
                e = loop
            else:
                end = self.new()
                for _ in range(hi - lo):
                    self.eps[e].append(end)
                    ps, pe = self.build(node.base, flags)
                    self.eps[e].append(ps)
                    e = pe
                self.eps[e].append(end)
                e = end
            return s, e
        if isinstance(node, ip._CharGroup):
            chars = node.chars
            if flags & ip.REFlags.CASE_INSENSITIVE:
                chars = {v for c in chars for v in (c, c.lower(), c.upper(), c.swapcase()) if len(v) == 1}
            ranges = chars_to_ranges(chars)
            if node.negated:
                ranges = complement_ranges(ranges)
            return self.ranges_fragment(normalize_ranges(ranges))
        if isinstance(node, _DOT_TYPE):
            if flags & ip.REFlags.SINGLE_LINE:
                ranges = complement_ranges([])
            else:
                ranges = complement_ranges([(10, 10)])
            return self.ranges_fragment(ranges)
        if isinstance(node, _EMPTY_TYPE):
            s = self.new()
            return s, s
        raise RegexError(f"unsupported regex node {type(node).__name__}", self.pattern)

    # ---- subset construction ---------------------------------------------------------------
    def closure_table(self) -> list[frozenset[int]]:
        n = len(self.eps)
        closures: list[frozenset[int] | None] = [None] * n
        for s in range(n):
            seen = {s}
            stack = [s]
            while stack:
                x = stack.pop()
                for y in self.eps[x]:
                    if y not in seen:
                        seen.add(y)
                        stack.append(y)
            # only states with byte edges (or the accept state) matter for the DFA
            closures[s] = frozenset(x for x in seen if self.edges[x] or x == self.accept)
        return closures  # type: ignore[return-value]

    def determinize(self, start: int, max_states: int, deadline: float) -> ByteDFA:
        closures = self.closure_table()
        init = closures[start]
        ids: dict[frozenset[int], int] = {init: 0}
        order = [init]
        rows: list[np.ndarray] = []
        accepting: list[bool] = []
        i = 0
        while i < len(order):
            if (i & 63) == 0 and time.monotonic() > deadline:
                raise ConstraintTooLarge(
                    f"regex {self.pattern!r}: determinisation exceeded its time limit", limit="timeout_s"
                )
            cur = order[i]
            accepting.append(self.accept in cur)
            row = np.full(256, -1, dtype=np.int32)
            edges = [ed for st in cur for ed in self.edges[st]]
            if edges:
                cuts = sorted({lo for lo, _, _ in edges} | {hi + 1 for _, hi, _ in edges})
                for a, b in zip(cuts, cuts[1:]):
                    targets = frozenset().union(
                        *(closures[t] for lo, hi, t in edges if lo <= a and b - 1 <= hi)
                    )
                    if not targets:
                        continue
                    j = ids.get(targets)
                    if j is None:
                        j = len(order)
                        if j >= max_states:
                            raise ConstraintTooLarge(
                                f"regex {self.pattern!r} needs more than {max_states} DFA states",
                                limit="max_states",
                            )
                        ids[targets] = j
                        order.append(targets)
                    row[a:b] = j
            rows.append(row)
            i += 1
        table = np.stack(rows) if rows else np.zeros((0, 256), np.int32)
        return ByteDFA(table, np.array(accepting, dtype=bool), 0, trim=True)
