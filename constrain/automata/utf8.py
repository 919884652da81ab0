"""Code-point ranges to UTF-8 byte-range sequences.

Masks are computed over token *bytes*, and tokens split multi-byte characters (byte-level
BPE, ``<0xNN>`` fallback), so character classes must become byte automata.  A code-point
range maps to a few sequences of byte ranges; each sequence is a product of ranges, so it
can be laid out as a chain of automaton states.
"""

from __future__ import annotations

MAX_CODEPOINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)

Range = tuple[int, int]


def normalize_ranges(ranges: list[Range]) -> list[Range]:
    """Sort, merge and drop surrogates (UTF-8 cannot encode them)."""
    out: list[Range] = []
    for lo, hi in sorted(ranges):
        if lo > hi:
            continue
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    result: list[Range] = []
    s_lo, s_hi = SURROGATES
    for lo, hi in out:
        if hi < s_lo or lo > s_hi:
            result.append((lo, hi))
            continue
        if lo < s_lo:
            result.append((lo, s_lo - 1))
        if hi > s_hi:
            result.append((s_hi + 1, hi))
    return result


def complement_ranges(ranges: list[Range]) -> list[Range]:
    """All encodable code points not in ``ranges``."""
    out: list[Range] = []
    nxt = 0
    for lo, hi in normalize_ranges(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODEPOINT:
        out.append((nxt, MAX_CODEPOINT))
    return normalize_ranges(out)


def chars_to_ranges(chars) -> list[Range]:
    """A set of one-character strings as merged code-point ranges."""
    return normalize_ranges([(ord(c), ord(c)) for c in chars])


def utf8_sequences(lo: int, hi: int) -> list[list[Range]]:
    """Byte-range sequences whose concatenations are exactly the UTF-8 encodings of [lo, hi].

    ``lo``/``hi`` must not straddle the surrogate block (use :func:`normalize_ranges`).
    """
    out: list[list[Range]] = []
    stack = [(lo, hi)]
    while stack:
        a, b = stack.pop()
        if a > b:
            continue
        split = False
        for boundary in (0x7F, 0x7FF, 0xFFFF):
            if a <= boundary < b:
                stack.append((boundary + 1, b))
                stack.append((a, boundary))
                split = True
                break
        if split:
            continue
        if b <= 0x7F:
            out.append([(a, b)])
            continue
        n = len(chr(a).encode("utf-8"))
        for i in range(1, n):
            m = (1 << (6 * i)) - 1
            if (a & ~m) != (b & ~m):
                if a & m:
                    stack.append(((a | m) + 1, b))
                    stack.append((a, a | m))
                    split = True
                    break
                if (b & m) != m:
                    stack.append((b & ~m, b))
                    stack.append((a, (b & ~m) - 1))
                    split = True
                    break
        if split:
            continue
        ea, eb = chr(a).encode("utf-8"), chr(b).encode("utf-8")
        out.append(list(zip(ea, eb)))
    out.sort()
    return out
