"""String constraints: value automata (pattern, length, format) and their JSON encodings.

JSON Schema constrains the *decoded* value of a string, while the model emits its JSON
text, where any character may appear escaped (``json.dumps`` escapes every non-ASCII
character as ``\\uXXXX`` by default).  So we build a byte DFA over the UTF-8 of the value
first (intersections happen there) and then :func:`json_string_dfa` turns it into a DFA
over the JSON text: literal bytes, short escapes and ``\\uXXXX`` escapes (with surrogate
pairs for astral characters) are all fed to the value automaton as the UTF-8 bytes of the
character they denote.  The transduction works digit by digit (each hex digit fixes some
bits of the UTF-8 bytes), so it is a product with a small fixed transducer, not a
65,536-way expansion per state.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

from constrain.automata.bytedfa import ByteDFA
from constrain.automata.regex import regex_to_dfa
from constrain.errors import ConstraintTooLarge, RegexError

#: Any JSON string (full match), as regex text so that it stays exportable to Lark.
ANY_JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'

#: Longest exact length bound; longer bounds are dropped (over-approximation, warned).
MAX_EXACT_LENGTH = 256

# ECMA-262 \s: WhiteSpace + LineTerminator (Unicode Zs and a few others).
_ECMA_WS = "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"


def ecma_to_python(pattern: str) -> str:
    """Translate an ECMA-262 pattern to the Python syntax of :func:`regex_to_dfa`.

    ``\\d`` and ``\\w`` are ASCII in both (our regex engine is ASCII for them); ``\\s`` is
    Unicode in ECMA, so it is spelled out; ``\\/`` is a plain slash; named groups use the
    Python spelling.  Anything we cannot translate is left for the regex engine to reject.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "s":
                out.append(_ECMA_WS if in_class else f"[{_ECMA_WS}]")
            elif nxt == "S":
                if in_class:
                    raise RegexError("\\S inside a character class is not supported", pattern, i)
                out.append(f"[^{_ECMA_WS}]")
            elif nxt == "/":
                out.append("/")
            elif nxt == "c" and i + 2 < n and pattern[i + 2].isalpha():
                out.append(f"\\x{ord(pattern[i + 2].upper()) % 32:02x}")
                i += 3
                continue
            elif nxt == "d":
                out.append("0-9" if in_class else "[0-9]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            out.append(ch)
        elif ch == "[" and (cls := _class_with_non_space(pattern, i)) is not None:
            out.append(cls[0])
            i = cls[1]
            continue
        elif ch == "[":
            in_class = True
            out.append(ch)
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):  # ECMA: []] is not a literal ]
                raise RegexError("empty character class", pattern, i)
        elif pattern.startswith("(?<", i) and i + 3 < n and pattern[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


# the code points of _ECMA_WS, one by one (a negated class with \S inside needs them)
_ECMA_WS_CHARS = "\t\n\x0b\x0c\r \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + (
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _class_with_non_space(pattern: str, i: int) -> tuple[str, int] | None:
    r"""``[...]`` at ``i`` holding ``\S`` as Python regex text, and the offset after it; else None.

    ``\S`` is the complement of ECMA's Unicode ``\s``, which has no class-item spelling:
    a class is a union of its items, so ``[\S...]`` becomes ``(?:[^ws]|[...])``, and
    ``[^\S...]`` (whitespace except the rest, e.g. ``[^\S\n]``) the listed whitespace
    characters the rest does not match.
    """
    j = i + 1
    negated = pattern.startswith("^", j)
    j += negated
    rest: list[str] = []
    has_s = False
    while j < len(pattern) and pattern[j] != "]":
        if pattern[j] == "\\" and j + 1 < len(pattern):
            if pattern[j + 1] == "S":
                has_s = True
            else:
                rest.append(pattern[j : j + 2])
            j += 2
            continue
        rest.append(pattern[j])
        j += 1
    if not has_s or j >= len(pattern):
        return None  # no \S, or no closing bracket: the ordinary path (and its errors)
    rest_py = ecma_to_python("[" + "".join(rest) + "]") if rest else None
    if not negated:
        non_ws = f"[^{_ECMA_WS}]"
        return (f"(?:{non_ws}|{rest_py})" if rest_py else non_ws), j + 1
    keep = [c for c in _ECMA_WS_CHARS if rest_py is None or re.fullmatch(rest_py, c) is None]
    if not keep:
        raise RegexError("character class matches nothing", pattern, i)
    return "[" + "".join(f"\\u{ord(c):04x}" for c in keep) + "]", j + 1


def _unescaped_end(text: str, ch: str) -> bool:
    if not text.endswith(ch):
        return False
    k, j = 0, len(text) - 2
    while j >= 0 and text[j] == "\\":
        k += 1
        j -= 1
    return k % 2 == 0


def pattern_dfa(pattern: str, *, timeout_s: float = 1.5, max_states: int = 20_000) -> ByteDFA:
    """Value DFA of strings in which ECMA ``pattern`` finds a match (JSON Schema's search).

    Raises :class:`RegexError` (untranslatable) or :class:`ConstraintTooLarge`.
    """
    look = _leading_lookaheads(pattern)
    if look is not None:
        # '^(?!A)B': B's language minus "starts with a match of A" ('^(?=A)B': intersected);
        # the regex engine has no look-arounds, but at the start they are DFA operations
        looks, rest = look
        dfa = pattern_dfa(rest, timeout_s=timeout_s, max_states=max_states)
        for negative, body in looks:
            la = _starts_with_dfa(body, pattern, timeout_s, max_states)
            dfa = difference(dfa, la, max_states=max_states) if negative else dfa.intersect(la, max_states=max_states)
        return dfa
    full = _search_regex(ecma_to_python(pattern))
    try:
        return regex_to_dfa(full, max_states=max_states, timeout_s=timeout_s)
    except RegexError as e:
        raise RegexError(str(e), pattern) from None


def _leading_lookaheads(pattern: str) -> tuple[list[tuple[bool, str]], str] | None:
    """``[(negative, body), ...]`` and the rest (``^`` kept) of ``^(?!A)(?=B)...rest``; else None.

    Only look-aheads right after a leading ``^`` in a pattern whose rest has no top-level
    ``|`` (a look-ahead in one branch of an alternation would not apply to the others).
    """
    if not pattern.startswith(("^(?=", "^(?!")):
        return None
    looks: list[tuple[bool, str]] = []
    i = 1
    while pattern.startswith(("(?=", "(?!"), i):
        end = None
        for j, ch, depth in _syntax(pattern[i:]):
            if ch == ")" and depth == 0:
                end = i + j
                break
        if end is None:
            return None
        looks.append((pattern[i + 2] == "!", pattern[i + 3 : end]))
        i = end + 1
    rest = "^" + pattern[i:]
    if len(_top_level_branches(rest)) > 1:
        return None
    return looks, rest


def _starts_with_dfa(body: str, pattern: str, timeout_s: float, max_states: int) -> ByteDFA:
    """Strings that begin with a match of look-ahead ``body`` (a branch ending in ``$``: whole)."""
    brs = []
    for br in _top_level_branches(body):
        br = br[1:] if br.startswith("^") else br  # '^' at the look-ahead's own position 0
        if _unescaped_end(br, "$"):
            brs.append(ecma_to_python(br[:-1]))
        else:
            brs.append(ecma_to_python(br) + r"[\s\S]*")
    try:
        return regex_to_dfa("(?:" + "|".join(f"(?:{b})" for b in brs) + ")", max_states=max_states, timeout_s=timeout_s)
    except RegexError as e:
        raise RegexError(str(e), pattern) from None


def _search_regex(body: str) -> str:
    """A full-match regex for "``body`` finds a match somewhere".

    Each top-level branch carries its own anchors: '^all|tags$' is "starts with all, or ends
    with tags", so every branch is widened on the sides it does not anchor.  A branch that is
    one group around anchored alternatives, as in '^$|(^a+$)', is opened and read the same way.
    Branches anchored alike share one widening: '[\\s\\S]*(?:a|b)[\\s\\S]*', not one
    per branch (the same language, but many parallel loops make determinisation blow up).
    """
    buckets: dict[tuple[bool, bool], list[str]] = {}
    nested: list[str] = []
    for br in _top_level_branches(body):
        inner = _whole_group(br)
        if inner is not None and ("^" in inner or "$" in inner):
            nested.append(_search_regex(inner))
            continue
        start = br.startswith("^")
        end = _unescaped_end(br, "$")
        if start:
            br = br[1:]
        if end:
            br = br[:-1]
        buckets.setdefault((start, end), []).append(br)
    out = [
        ("" if start else r"[\s\S]*") + "(?:" + "|".join(brs) + ")" + ("" if end else r"[\s\S]*")
        for (start, end), brs in buckets.items()
    ] + nested
    return out[0] if len(out) == 1 else "|".join(f"(?:{b})" for b in out)


def _syntax(body: str) -> Iterator[tuple[int, str, int]]:
    """``(index, char, group depth after it)`` for each character outside escapes and classes."""
    depth, i, in_class = 0, 0, False
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        else:
            depth += (ch == "(") - (ch == ")")
            yield i, ch, depth
        i += 1


def _whole_group(branch: str) -> str | None:
    """The inside of ``(...)`` / ``(?:...)`` when that one group spans all of ``branch``."""
    if not branch.startswith("(") or branch.startswith("(?") and not branch.startswith("(?:"):
        return None
    for i, ch, depth in _syntax(branch):
        if ch == ")" and depth == 0:
            if i != len(branch) - 1:
                return None  # the group closes early ('(a)(b)', '(a)+')
            return branch[3:-1] if branch.startswith("(?:") else branch[1:-1]
    return None


def _top_level_branches(body: str) -> list[str]:
    """``body`` split at the ``|`` that sit outside every group and character class."""
    out, last = [], 0
    for i, ch, depth in _syntax(body):
        if ch == "|" and depth == 0:
            out.append(body[last:i])
            last = i + 1
    out.append(body[last:])
    return out


def length_dfa(min_len: int, max_len: int | None) -> ByteDFA:
    """Strings of ``min_len..max_len`` code points (valid UTF-8, no surrogates), built directly.

    Built by hand because a counted ``.{m,n}`` through the general regex construction is
    slow for large bounds.
    """
    if max_len is not None and max_len > MAX_EXACT_LENGTH:
        raise ConstraintTooLarge(f"maxLength {max_len} exceeds {MAX_EXACT_LENGTH}", "max_length")
    if min_len > MAX_EXACT_LENGTH:
        raise ConstraintTooLarge(f"minLength {min_len} exceeds {MAX_EXACT_LENGTH}", "min_length")
    top = max_len if max_len is not None else min_len
    # per count c: main M_c, and for c < top (or looping at top when unbounded) 7 helpers:
    # C1 (1 cont left), C2 (2 left), C3 (3 left), E0 (after E0), ED, F0, F4
    per = 8
    n_counts = top + 1
    n = n_counts * per
    table = np.full((n, 256), -1, dtype=np.int32)
    acc = np.zeros(n, dtype=bool)
    for c in range(n_counts):
        base = c * per
        nxt = c + 1 if c < top else (c if max_len is None else -1)
        acc[base] = c >= min_len
        if nxt < 0:
            continue
        m_next = nxt * per
        c1, c2, c3, e0, ed, f0, f4 = (base + k for k in range(1, 8))
        row = table[base]
        row[0x00:0x80] = m_next
        row[0xC2:0xE0] = c1
        row[0xE0] = e0
        row[0xE1:0xED] = c2
        row[0xED] = ed
        row[0xEE:0xF0] = c2
        row[0xF0] = f0
        row[0xF1:0xF4] = c3
        row[0xF4] = f4
        table[c1, 0x80:0xC0] = m_next
        table[c2, 0x80:0xC0] = c1
        table[c3, 0x80:0xC0] = c2
        table[e0, 0xA0:0xC0] = c1
        table[ed, 0x80:0xA0] = c1
        table[f0, 0x90:0xC0] = c2
        table[f4, 0x80:0x90] = c2
    return ByteDFA(table, acc, 0)


# ---- formats (regexes over the value; anchored, full match) ---------------------------------
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}}"
_H16 = r"[0-9a-fA-F]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6 = (
    "(?:"
    + "|".join(
        [
            rf"(?:{_H16}:){{6}}{_LS32}",
            rf"::(?:{_H16}:){{5}}{_LS32}",
            rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
            rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
            rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
            rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
        ]
    )
    + ")"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"
# calendar-exact full-date: 30-day months, February 28, and the 29th only in leap years
# (divisible by 4, centuries only when divisible by 400)
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_DATE = rf"(?:[0-9]{{4}}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?(?:[zZ]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUBDELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9a-fA-F]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUBDELIMS}:@]|{_PCT})"
_URI = (
    rf"[A-Za-z][A-Za-z0-9+\-.]*:"
    rf"(?://(?:(?:[{_UNRESERVED}{_SUBDELIMS}:]|{_PCT})*@)?(?:\[[0-9A-Fa-f:.]+\]|(?:[{_UNRESERVED}{_SUBDELIMS}]|{_PCT})*)(?::[0-9]*)?"
    rf"(?:/{_PCHAR}*)*|/?(?:{_PCHAR}+(?:/{_PCHAR}*)*)?)"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)
_IRI_CHARS = r'[^\x00-\x20\x7f-\x9f<>"{}|\\^`]*'
# RFC 6570 level 4; literals admit every non-ASCII character (ucschar/iprivate,
# over-approximated) and the reserved operators "=,!@|" are let through
_VARCHAR = rf"(?:[A-Za-z0-9_]|{_PCT})"
_VARSPEC = rf"{_VARCHAR}(?:\.?{_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\*)?"
_URI_TEMPLATE = (
    rf"(?:[^\x00-\x20\x7f\"%<>\\^`{{|}}]|{_PCT}"
    rf"|\{{[+#./;?&=,!@|]?{_VARSPEC}(?:,{_VARSPEC})*\}})*"
)

#: format name -> value regex.  Deliberately *looser* than the RFCs where they are subtle
#: (never stricter than Python's jsonschema format checker on realistic values): a format
#: must never block a valid value.
FORMAT_REGEX: dict[str, str] = {
    "date": _DATE,
    "time": _TIME,
    "date-time": rf"{_DATE}[tT]{_TIME}",  # RFC 3339 section 5.6: T or t (a space is only a NOTE)
    "duration": r"P(?:(?:[0-9]+D|[0-9]+M(?:[0-9]+D)?|[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?)"
    r"(?:T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S))?"
    r"|T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)|[0-9]+W)",
    # RFC 5321 allows quoted local parts with spaces and even '@': only the '@' is certain
    "email": r"[\s\S]*@[\s\S]*",
    "idn-email": r"[\s\S]*@[\s\S]*",
    "hostname": _HOSTNAME,
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "uri": _URI,
    "uri-template": _URI_TEMPLATE,
    # RFC 3987 over-approximated: a scheme, then no space, control or excluded delimiter
    "iri": r"[A-Za-z][A-Za-z0-9+\-.]*:" + _IRI_CHARS,
    "iri-reference": _IRI_CHARS,
    "json-pointer": r"(?:/(?:[^/~]|~[01])*)*",
    "relative-json-pointer": r"(?:0|[1-9][0-9]*)(?:#|(?:/(?:[^/~]|~[01])*)*)",
}


#: formats whose regex is exactly the format (the others over-approximate)
EXACT_FORMATS = frozenset({"uuid", "ipv4", "date"})


def format_dfa(name: str) -> ByteDFA | None:
    """Value DFA of a known format, else ``None`` (unknown formats are any string)."""
    if name == "regex":
        return regex_syntax_dfa()
    rx = FORMAT_REGEX.get(name)
    if rx is None:
        return None
    return regex_to_dfa(rx, timeout_s=5.0)


_REGEX_SYNTAX: ByteDFA | None = None
REGEX_SYNTAX_DEPTH = 8


def regex_syntax_dfa(depth: int = REGEX_SYNTAX_DEPTH) -> ByteDFA:
    """Format ``regex``: rejects only what Python's ``re.compile`` (the validators' check) surely
    rejects -- unbalanced or unterminated groups and classes, a quantifier with nothing to
    repeat or stacked on another, a trailing backslash.

    Regex syntax nests, so it is not regular: groups are counted up to ``depth`` and any text
    past that is accepted (an over-approximation, never a false reject); escapes, flags and
    extension groups are taken as atoms.
    """
    global _REGEX_SYNTAX
    if depth == REGEX_SYNTAX_DEPTH and _REGEX_SYNTAX is not None:
        return _REGEX_SYNTAX
    # per depth: Q0 nothing to repeat, Q1 after an atom, R1 after a quantifier (a lazy '?' or
    # possessive '+' may follow), R2 after that, OPEN just after '(', EXT just after '(?',
    # ESC after a backslash, C0 after '[', CC after '[^', CB inside a class, CE class escape,
    # CM inside a '(?#' comment
    modes = ["Q0", "Q1", "R1", "R2", "OPEN", "EXT", "ESC", "C0", "CC", "CB", "CE", "CM"]
    nm = len(modes)
    m = {k: i for i, k in enumerate(modes)}
    n = (depth + 1) * nm + 1
    deep = n - 1  # past the depth bound: anything goes
    table = np.full((n, 256), -1, dtype=np.int32)
    acc = np.zeros(n, dtype=bool)
    table[deep, :] = deep
    acc[deep] = True

    def sid(d: int, mode: str) -> int:
        return d * nm + m[mode]

    for d in range(depth + 1):
        up = sid(d + 1, "OPEN") if d < depth else deep
        down = sid(d - 1, "Q1") if d > 0 else -1
        for mode in ("Q0", "Q1", "R1", "R2", "OPEN", "EXT"):
            row = table[sid(d, mode)]
            row[:] = sid(d, "Q1")  # any other character is an atom
            row[ord("\\")] = sid(d, "ESC")
            row[ord("[")] = sid(d, "C0")
            row[ord("(")] = up
            row[ord(")")] = down
            row[ord("|")] = sid(d, "Q0")
            # '^', '$' and '{' cannot be repeated in Python, but are kept as atoms (over-approx.)
            q = {"Q0": (-1, -1, -1), "OPEN": (-1, -1, -1), "EXT": (-1, -1, -1),
                 "Q1": (sid(d, "R1"),) * 3, "R1": (-1, sid(d, "R2"), sid(d, "R2")), "R2": (-1, -1, -1)}[mode]
            row[ord("*")], row[ord("+")], row[ord("?")] = q
            if mode == "OPEN":
                row[ord("?")] = sid(d, "EXT")
            if mode == "EXT":
                row[ord("#")] = sid(d, "CM")
            acc[sid(d, mode)] = d == 0 and mode in ("Q0", "Q1", "R1", "R2")
        table[sid(d, "ESC"), :] = sid(d, "Q1")
        for mode in ("C0", "CC", "CB"):
            row = table[sid(d, mode)]
            row[:] = sid(d, "CB")
            row[ord("\\")] = sid(d, "CE")
            row[ord("]")] = sid(d, "Q1")  # ends the class
        # ...except first ('[]' or '[^]'): Python -- the validators' check -- reads it as a
        # literal ']' ('[])]' is the class of ']' and ')'), ECMA as an empty class; following
        # Python never rejects what the validators accept (found by the hypothesis test below)
        table[sid(d, "C0"), ord("]")] = sid(d, "CB")
        table[sid(d, "CC"), ord("]")] = sid(d, "CB")
        table[sid(d, "C0"), ord("^")] = sid(d, "CC")
        table[sid(d, "CE"), :] = sid(d, "CB")
        table[sid(d, "CM"), :] = sid(d, "CM")
        table[sid(d, "CM"), ord(")")] = down if d > 0 else -1
    raw = ByteDFA(table, acc, sid(0, "Q0"), trim=True)
    out = raw.intersect(regex_to_dfa(r"[\s\S]*")).minimize()  # and valid UTF-8
    if depth == REGEX_SYNTAX_DEPTH:
        _REGEX_SYNTAX = out
    return out


def literal_value_dfa(values: list[str]) -> ByteDFA:
    """Exactly the given strings (as UTF-8), built as a trie."""
    if not values:
        return ByteDFA.empty()
    rows: list[list[int]] = [[-1] * 256]
    acc = [False]
    for v in values:
        s = 0
        for byte in v.encode("utf-8", "surrogatepass"):
            nxt = rows[s][byte]
            if nxt < 0:
                nxt = len(rows)
                rows.append([-1] * 256)
                acc.append(False)
                rows[s][byte] = nxt
            s = nxt
        acc[s] = True
    return ByteDFA(np.array(rows, dtype=np.int32), np.array(acc), 0, trim=False)


def difference(a: ByteDFA, b: ByteDFA, *, max_states: int = 20_000) -> ByteDFA:
    """``L(a) - L(b)`` by a bounded product (``b`` is completed with a sink)."""
    if a.is_empty() or b.is_empty():
        return a
    ta, tb = a.table.tolist(), b.table.tolist()
    acc_a, acc_b = a.accepting.tolist(), b.accepting.tolist()
    ids = {(a.start, b.start): 0}
    pairs = [(a.start, b.start)]
    rows = []
    i = 0
    while i < len(pairs):
        sa, sb = pairs[i]
        ra = ta[sa]
        rb = tb[sb] if sb >= 0 else None
        row = [-1] * 256
        for byte in range(256):
            x = ra[byte]
            if x < 0:
                continue
            key = (x, rb[byte] if rb is not None else -1)
            j = ids.get(key)
            if j is None:
                j = len(pairs)
                if j >= max_states:
                    raise ConstraintTooLarge(f"difference exceeds {max_states} states", "max_states")
                ids[key] = j
                pairs.append(key)
            row[byte] = j
        rows.append(row)
        i += 1
    acc = np.array([acc_a[x] and not (y >= 0 and acc_b[y]) for x, y in pairs])
    return fast_trim(np.array(rows, dtype=np.int32), acc, 0)


# ---- the JSON encoding transducer ------------------------------------------------------------
_HEX = {**{ord(c): i for i, c in enumerate("0123456789abcdef")}, **{ord(c): i for i, c in enumerate("0123456789ABCDEF")}}
_SHORT = {ord('"'): 0x22, ord("\\"): 0x5C, ord("/"): 0x2F, ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9}


def json_string_dfa(value: ByteDFA, *, max_states: int = 200_000) -> ByteDFA:
    """DFA over JSON string text (quotes included) whose decoded value ``value`` accepts.

    State ids: 0 = before the opening quote, 1 = after the closing quote, ``2 + q`` = inside
    the string with value state ``q`` (all rows at once with numpy), ``2 + n + q`` = after a
    backslash; escape states ``(kind, q, pending_bits)`` of a ``\\uXXXX`` escape are made
    lazily, one hex digit at a time (each digit either completes a UTF-8 byte, stepping
    ``q``, or is remembered as pending bits).  Lone surrogate escapes are rejected (they
    denote no Unicode scalar value).
    """
    if value.is_empty():
        return ByteDFA.empty()
    T = value.table
    n = value.n_states
    Tl = T.tolist()
    main0, esc0 = 2, 2 + n
    base = np.full((2 + 2 * n, 256), -1, dtype=np.int32)
    base[0, 0x22] = main0 + value.start
    main = np.where(T >= 0, T + main0, -1).astype(np.int32)
    main[:, :0x20] = -1
    main[:, 0x22] = np.where(value.accepting, 1, -1)
    main[:, 0x5C] = esc0 + np.arange(n, dtype=np.int32)
    base[main0 : main0 + n] = main
    for b, v in _SHORT.items():
        col = T[:, v]
        base[esc0 : esc0 + n, b] = np.where(col >= 0, col + main0, -1)

    def st(q: int, b: int) -> int:
        return Tl[q][b] if q >= 0 else -1

    # which UTF-8 lead bytes each state has: escapes for absent lengths die at once
    live = T >= 0
    has2 = live[:, 0xC2:0xE0].any(axis=1).tolist()
    has3 = live[:, 0xE0:0xF0].any(axis=1).tolist()
    has4 = live[:, 0xF0:0xF5].any(axis=1).tolist()
    gate = {"c2": has2, "c3h2": None, "hi1": has4, "uD": None}

    ids: dict[tuple, int] = {}
    order: list[tuple] = []
    first = 2 + 2 * n

    # states with equal rows behave alike inside an escape: share their escape states
    _, canon = np.unique(T, axis=0, return_index=False, return_inverse=True)
    canon = canon.reshape(-1)
    rep = np.zeros(int(canon.max()) + 1, dtype=np.int64)
    rep[canon] = np.arange(n)
    canon_q = rep[canon].tolist()

    def sid(s: tuple) -> int:
        kind, q, x = s
        if q < 0:
            return -1
        if kind == "main":
            return main0 + q
        if kind == "uD" and not (has3[q] or has4[q]):
            return -1
        g = gate.get(kind)
        if g is not None and not g[q]:
            return -1
        if kind == "u00" and not has2[q] and not live[q, :0x80].any():
            return -1
        s = (kind, canon_q[q], x)
        j = ids.get(s)
        if j is None:
            j = first + len(order)
            if j >= max_states:
                raise ConstraintTooLarge(f"JSON string automaton exceeds {max_states} states", "max_states")
            ids[s] = j
            order.append(s)
        return j

    ucol = ord("u")
    for q in range(n):
        base[esc0 + q, ucol] = sid(("u", q, 0))
    rows: list[list[int]] = []
    i = 0
    while i < len(order):
        kind, q, x = order[i]
        row = [-1] * 256
        if kind == "lo_bs":
            row[0x5C] = sid(("lo_u", q, x))
        elif kind == "lo_u":
            row[ucol] = sid(("lo_d", q, x))
        else:
            for b, h in _HEX.items():
                nxt = _hex_step(kind, q, x, h, st)
                if nxt is not None:
                    row[b] = sid(nxt)
        rows.append(row)
        i += 1
    table = np.concatenate([base, np.array(rows, dtype=np.int32).reshape(-1, 256)]) if rows else base
    acc = np.zeros(len(table), dtype=bool)
    acc[1] = True
    return fast_trim(table, acc, 0)


def fast_trim(table: np.ndarray, acc: np.ndarray, start: int) -> ByteDFA:
    """Drop states that cannot reach acceptance (vectorised fixpoint), then build the DFA.

    Unreachable states are kept (harmless); falls back to the generic trim for very deep
    automata where the fixpoint would need many rounds.
    """
    alive = acc.copy()
    safe = np.maximum(table, 0)
    valid = table >= 0
    for _ in range(400):
        new = alive | (valid & alive[safe]).any(axis=1)
        if (new == alive).all():
            break
        alive = new
    else:
        return ByteDFA(table, acc, start)
    if not alive[start]:
        return ByteDFA.empty()
    new_id = np.cumsum(alive) - 1
    sub = table[alive]
    ok = (sub >= 0) & alive[np.maximum(sub, 0)]
    out = np.where(ok, new_id[np.maximum(sub, 0)], -1).astype(np.int32)
    return ByteDFA(out, acc[alive], int(new_id[start]), trim=False)


def _hex_step(kind: str, q: int, x: int, h: int, st) -> tuple | None:
    """One hex digit of a ``\\u`` escape (see :func:`json_string_dfa`)."""
    if kind == "u":  # first digit h1
        if h == 0:
            return ("u0", q, 0)
        if h == 0xD:
            return ("uD", q, 0)
        return ("c3", st(q, 0xE0 | h), 0)  # 3-byte char, lead byte known
    if kind == "u0":  # h1 = 0, this is h2
        if h == 0:
            return ("u00", q, 0)
        if h < 8:
            return ("c2", q, h)  # 2-byte char, h2 pending
        return ("c3h2", st(q, 0xE0), h)
    if kind == "uD":  # h1 = D
        if h < 8:
            return ("c3h2", st(q, 0xED), h)
        if h < 0xC:
            return ("hi1", q, h - 8)  # high surrogate
        return None  # lone low surrogate
    if kind == "c3":  # lead consumed; this is h2
        return ("c3h2", q, h)
    if kind == "c3h2":  # h2 pending (x); this is h3 -> second byte
        return ("tail", st(q, 0x80 | (x << 2) | (h >> 2)), h & 3)
    if kind == "u00":  # cp < 0x100; this is h3
        if h < 8:
            return ("ascii", q, h)
        return ("tail", st(q, 0xC0 | (h >> 2)), h & 3)
    if kind == "c2":  # cp in 0x100..0x7FF, h2 pending; this is h3
        return ("tail", st(q, 0xC0 | (x << 2) | (h >> 2)), h & 3)
    if kind == "ascii":  # this is h4
        return ("main", st(q, (x << 4) | h), 0)
    if kind == "tail":  # two pending bits; this is h4 -> last byte
        return ("main", st(q, 0x80 | (x << 4) | h), 0)
    if kind == "hi1":  # x = 2 bits of the high surrogate; this is h3
        # w = (cp >> 10) = hi10 + 0x40; adding 0x40 never carries out of h4's nibble, so
        # the lead byte (w >> 8) and bits 4..7 of w are known now
        w_hi = ((x << 8) | (h << 4)) + 0x40
        return ("hi1b", st(q, 0xF0 | (w_hi >> 8)), (w_hi >> 4) & 0xF)
    if kind == "hi1b":  # q has consumed the 4-byte lead; x = bits 4..7 of w; this is h4
        q2 = st(q, 0x80 | (x << 2) | (h >> 2))
        return ("lo_bs", q2, h & 3)
    if kind == "lo_d":  # expects 'd'/'D'
        return ("lo_h2", q, x) if h == 0xD else None
    if kind == "lo_h2":  # expects c..f
        if h < 0xC:
            return None
        return ("lo_h3", q, (x << 2) | (h - 0xC))
    if kind == "lo_h3":  # x = 2 bits (w&3) + 2 bits of lo; this is h3'
        return ("tail", st(q, 0x80 | (x << 2) | (h >> 2)), h & 3)
    return None


_WS_SPLIT = re.compile(r"\s+")


_J1: ByteDFA | None = None
_LEN_CACHE: dict[tuple[int, int | None], ByteDFA] = {}


def json_length_string_dfa(min_len: int, max_len: int | None) -> ByteDFA:
    """JSON strings whose value has ``min_len..max_len`` code points, by tiling.

    The one-character JSON automaton (literal, short escape, ``\\uXXXX`` or a surrogate
    pair) is copied once per count, so large bounds cost numpy block copies, not a
    transduction of a counting automaton.
    """
    global _J1
    hit = _LEN_CACHE.get((min_len, max_len))
    if hit is not None:
        return hit
    if max_len is not None and max_len > 4 * MAX_EXACT_LENGTH:
        raise ConstraintTooLarge(f"maxLength {max_len} exceeds {4 * MAX_EXACT_LENGTH}", "max_length")
    if min_len > 4 * MAX_EXACT_LENGTH:
        raise ConstraintTooLarge(f"minLength {min_len} exceeds {4 * MAX_EXACT_LENGTH}", "min_length")
    if max_len is not None and max_len < min_len:
        return ByteDFA.empty()
    if _J1 is None:
        _J1 = json_string_dfa(length_dfa(1, 1)).minimize()
    j1 = _J1
    t1 = j1.table
    quote = 0x22
    a = int(t1[j1.start, quote])
    final = int(t1[a, quote]) if False else None  # a (count 0) is not accepting
    # b: the count-1 main state, the one whose quote leads to acceptance
    bs = [s for s in range(j1.n_states) if s != j1.start and t1[s, quote] >= 0 and j1.accepting[t1[s, quote]]]
    b = bs[0]
    final = int(t1[b, quote])
    middle = [s for s in range(j1.n_states) if s not in (j1.start, final, b)]
    idx = {s: i for i, s in enumerate(middle)}
    m = len(middle)
    top = max_len if max_len is not None else min_len
    copies = top + 1
    n = copies * m + 2
    start_id, final_id = n - 2, n - 1
    table = np.full((n, 256), -1, dtype=np.int32)
    sub = t1[middle]  # (m, 256)
    local = np.full(j1.n_states, -1, dtype=np.int64)
    for s, i in idx.items():
        local[s] = i
    to_b = sub == b
    inner = np.where(sub >= 0, local[np.maximum(sub, 0)], -1)
    inner[to_b] = -2  # marker: next copy's a
    inner[sub == final] = -1
    a_local = idx[a]
    for c in range(copies):
        if c == top and max_len is not None:
            # the last copy: no room for another character, only the closing quote
            table[c * m + a_local, quote] = final_id
            continue
        block = np.where(inner >= 0, inner + c * m, -1)
        if c < top:
            block[inner == -2] = (c + 1) * m + a_local
        else:
            block[inner == -2] = c * m + a_local
        table[c * m : (c + 1) * m] = block
        if c >= min_len:
            table[c * m + a_local, quote] = final_id
    table[start_id, quote] = a_local
    acc = np.zeros(n, dtype=bool)
    acc[final_id] = True
    # every state reaches acceptance except the unused rows of the last copy: drop those
    if max_len is not None:
        keep = np.ones(n, dtype=bool)
        keep[top * m : (top + 1) * m] = False
        keep[top * m + a_local] = True
        new_id = np.cumsum(keep) - 1
        sub = table[keep]
        table = np.where(sub >= 0, new_id[np.maximum(sub, 0)], -1).astype(np.int32)
        acc = acc[keep]
        start_id = int(new_id[start_id])
    out = ByteDFA(table, acc, start_id, trim=False)
    _LEN_CACHE[(min_len, max_len)] = out
    return out


_ANY_TEXT: ByteDFA | None = None


def any_string_text_dfa() -> ByteDFA:
    """DFA of :data:`ANY_JSON_STRING` (cached)."""
    global _ANY_TEXT
    if _ANY_TEXT is None:
        _ANY_TEXT = regex_to_dfa(ANY_JSON_STRING)
    return _ANY_TEXT


def minus_literals(a: ByteDFA, texts: list[str]) -> ByteDFA:
    """``L(a)`` minus a finite set of byte strings, in time linear in the set's trie.

    States are ``a``'s own states (once off the trie) plus one per trie node walked in
    lockstep with ``a``; rows are copied with numpy and patched only at trie children.
    """
    if a.is_empty() or not texts:
        return a
    n = a.n_states
    T = a.table
    # trie of the texts
    children: list[dict[int, int]] = [{}]
    final = [False]
    for t in texts:
        node = 0
        for byte in t.encode("utf-8", "surrogatepass"):
            nxt = children[node].get(byte)
            if nxt is None:
                nxt = len(children)
                children.append({})
                final.append(False)
                children[node][byte] = nxt
            node = nxt
        final[node] = True
    plain = np.where(T >= 0, T, -1).astype(np.int32)  # ids 0..n-1: off-trie copies of a
    pairs: dict[tuple[int, int], int] = {}
    rows: list[np.ndarray] = []
    acc: list[bool] = []
    order: list[tuple[int, int]] = []

    def pid(q: int, node: int) -> int:
        key = (q, node)
        j = pairs.get(key)
        if j is None:
            j = n + len(order)
            pairs[key] = j
            order.append(key)
        return j

    start = pid(a.start, 0)
    i = 0
    while i < len(order):
        q, node = order[i]
        row = plain[q].copy()
        for byte, child in children[node].items():
            q2 = int(T[q, byte])
            row[byte] = pid(q2, child) if q2 >= 0 else -1
        rows.append(row)
        acc.append(bool(a.accepting[q]) and not final[node])
        i += 1
    table = np.concatenate([plain, np.stack(rows)])
    accepting = np.concatenate([a.accepting, np.array(acc, dtype=bool)])
    return fast_trim(table, accepting, start)
