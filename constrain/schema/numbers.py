"""Numeric constraints as regular languages over JSON number text.

Integer ranges are exact digit-range regexes (no leading zeros, so the text/value map is a
bijection on ``-?(0|[1-9][0-9]*)``).  Decimal bounds are exact for plain decimal text
(integer part + fraction) by comparing the integer part as a range and the fraction digit
by digit; numbers in exponent form are accepted without range check (an over-approximation
the compiler reports).  ``multipleOf`` for integers is a residue automaton.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np

from constrain.automata.bytedfa import ByteDFA

DIGITS = "[0-9]"
NAT = "(?:0|[1-9][0-9]*)"
ANY_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
EXP_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?[eE][+-]?[0-9]+"
ANY_INTEGER = r"-?(?:0|[1-9][0-9]*)(?:\.0+)?"
FRAC = r"(?:\.[0-9]+)?"

#: Largest modulus for which multipleOf builds a residue automaton.
MAX_MODULUS = 5000


def _cls(lo: int, hi: int) -> str:
    if lo == hi:
        return str(lo)
    if lo == 0 and hi == 9:
        return DIGITS
    return f"[{lo}-{hi}]"


def _same_len(lo: str, hi: str) -> str:
    """Regex for decimal strings of equal length ``len(lo)`` between ``lo`` and ``hi``."""
    if not lo:
        return ""
    if lo == hi:
        return lo
    if lo[0] == hi[0]:
        return lo[0] + _same_len(lo[1:], hi[1:])
    rest = len(lo) - 1
    alts = []
    if set(lo[1:]) <= {"0"} and set(hi[1:]) <= {"9"}:
        return _cls(int(lo[0]), int(hi[0])) + (f"{DIGITS}{{{rest}}}" if rest else "")
    start = int(lo[0])
    if set(lo[1:]) <= {"0"}:
        pass
    else:
        alts.append(lo[0] + _same_len(lo[1:], "9" * rest))
        start += 1
    end = int(hi[0])
    tail_hi = None
    if not set(hi[1:]) <= {"9"}:
        tail_hi = hi[0] + _same_len("0" * rest, hi[1:])
        end -= 1
    if start <= end:
        alts.append(_cls(start, end) + (f"{DIGITS}{{{rest}}}" if rest else ""))
    if tail_hi is not None:
        alts.append(tail_hi)
    return "(?:" + "|".join(alts) + ")" if len(alts) > 1 else alts[0]


def nat_range(lo: int, hi: int | None) -> str | None:
    """Regex for naturals ``lo..hi`` (``hi=None``: unbounded) without leading zeros; None if empty."""
    lo = max(lo, 0)
    if hi is not None and hi < lo:
        return None
    alts = []
    a = lo
    while True:
        la = len(str(a))
        top = 10**la - 1
        if hi is not None and hi <= top:
            alts.append(_same_len(str(a), str(hi)))
            break
        if hi is None and a == 10 ** (la - 1) and la > 1:
            alts.append(f"[1-9]{DIGITS}{{{la - 1},}}")
            break
        if hi is None and a == 0:
            alts.append(NAT)
            break
        alts.append(_same_len(str(a), str(top)))
        a = top + 1
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def int_range(lo: int | None, hi: int | None) -> str | None:
    """Regex for integers in ``[lo, hi]`` (None = unbounded) as JSON text; None if empty."""
    if lo is not None and hi is not None and lo > hi:
        return None
    alts = []
    # non-negative part
    if hi is None or hi >= 0:
        r = nat_range(max(lo, 0) if lo is not None else 0, hi)
        if r is not None:
            alts.append(r)
    # negative part: -n for n in [max(1,-hi), -lo]; '-0' is zero
    if lo is None or lo < 0:
        nlo = max(1, -hi) if hi is not None else 1
        nhi = -lo if lo is not None else None
        r = nat_range(nlo, nhi)
        if r is not None:
            alts.append("-" + r)
    if (lo is None or lo <= 0) and (hi is None or hi >= 0):
        alts.append("-0")
    if not alts:
        return None
    return "(?:" + "|".join(alts) + ")"


# ---- decimal bounds on plain (non-exponent) number text ------------------------------------
def _split(d: Decimal) -> tuple[int, str]:
    """|d| as (integer part, fraction digits without trailing zeros)."""
    d = abs(d)
    ip = int(d)
    frac = format(d - ip, "f")
    frac = frac.split(".")[1].rstrip("0") if "." in frac else ""
    return ip, frac


def _frac(digits: str, op: str) -> str | None:
    """Regex for nonempty fraction digit strings F with 0.F op 0.digits (op in ge gt le lt)."""
    if not digits:
        return {"ge": f"{DIGITS}+", "gt": f"{DIGITS}*[1-9]{DIGITS}*", "le": "0+", "lt": None}[op]
    d = int(digits[0])
    alts = []
    if op in ("ge", "gt") and d < 9:
        alts.append(_cls(d + 1, 9) + f"{DIGITS}*")
    if op in ("le", "lt") and d > 0:
        alts.append(_cls(0, d - 1) + f"{DIGITS}*")
    rest = digits[1:]
    if rest:
        sub = _frac(rest, op)
        if op in ("le", "lt"):  # F may stop early: implied zeros < the (nonzero) rest
            alts.append(digits[0] + (f"(?:{sub})?" if sub is not None else ""))
        elif sub is not None:
            alts.append(digits[0] + sub)
    else:
        tail = {"ge": f"{DIGITS}*", "gt": f"{DIGITS}*[1-9]{DIGITS}*", "le": "0*", "lt": None}[op]
        if tail is not None:
            alts.append(digits[0] + tail)
    if not alts:
        return None
    return "(?:" + "|".join(alts) + ")"


def abs_cmp(c: Decimal, op: str) -> str | None:
    """Unsigned plain decimals x (``NAT(\\.digits)?``) with x op |c| (op in ge gt le lt)."""
    ip, fd = _split(c)
    alts: list[str] = []
    if op in ("ge", "gt"):
        alts.append(nat_range(ip + 1, None) + FRAC)
        if op == "ge" and not fd:
            alts.append(f"{ip}{FRAC}")
        else:
            f = _frac(fd, op)
            if f is not None:
                alts.append(f"{ip}\\.{f}")
    else:
        if ip > 0:
            alts.append(nat_range(0, ip - 1) + FRAC)
        if op == "le" or fd:
            alts.append(f"{ip}")
        f = _frac(fd, op)
        if f is not None:
            alts.append(f"{ip}\\.{f}")
    return "(?:" + "|".join(alts) + ")" if alts else None


def decimal_range(lo: Decimal | None, lo_excl: bool, hi: Decimal | None, hi_excl: bool) -> list[str]:
    """Regexes whose intersection is the plain-decimal numbers within the bounds.

    Returns the list of per-bound regexes (each a full language of signed plain decimals);
    an empty list means unbounded.
    """
    out = []
    if lo is not None:
        out.append(_signed_ge(lo, lo_excl))
    if hi is not None:
        out.append(_signed_le(hi, hi_excl))
    return out


def _alts(*xs: str | None) -> str:
    ys = [x for x in xs if x is not None]
    if not ys:
        return "(?!)"
    return "(?:" + "|".join(ys) + ")"


def _signed_ge(c: Decimal, excl: bool) -> str:
    op = "gt" if excl else "ge"
    if c > 0:
        return _alts(abs_cmp(c, op))
    # all non-negatives qualify (for c == 0 with excl: only positives), negatives with |x| (<|<=) |c|
    if c == 0 and excl:
        return _alts(abs_cmp(Decimal(0), "gt"))
    neg = abs_cmp(c, "lt" if excl else "le")
    return _alts(f"{NAT}{FRAC}", f"-{neg}" if neg else None)


def _signed_le(c: Decimal, excl: bool) -> str:
    op = "lt" if excl else "le"
    if c < 0:
        r = abs_cmp(c, "gt" if excl else "ge")
        return _alts(f"-{r}" if r else None)
    if c == 0 and excl:
        r = abs_cmp(Decimal(0), "gt")
        return _alts(f"-{r}" if r else None)
    pos = abs_cmp(c, op)
    return _alts(f"-{NAT}{FRAC}", pos)


# ---- multipleOf -------------------------------------------------------------------------------
def integer_modulus(multiple_of: float | int) -> int | None:
    """The k such that an integer n is a multiple of ``multiple_of`` iff k divides n."""
    f = Fraction(str(multiple_of)) if not isinstance(multiple_of, int) else Fraction(multiple_of)
    if f <= 0:
        return None
    # n = m * p/q  <=>  n*q/p integer  <=>  p/gcd(p,q) | n  (gcd(p,q) = 1 for a reduced fraction)
    return f.numerator


def residue_dfa(k: int) -> ByteDFA:
    """Integer text ``-?(0|[1-9][0-9]*)(\\.0+)?`` whose value is divisible by ``k``."""
    # states: 0 start, 1 after '-', 2 zero, 3 '.' pending, 4 '.0+' (accepting), 5.. residues
    n = 5 + k
    t = np.full((n, 256), -1, dtype=np.int32)
    acc = np.zeros(n, dtype=bool)
    for s in (0, 1):
        t[s, ord("0")] = 2
        for d in range(1, 10):
            t[s, ord("0") + d] = 5 + d % k
    t[0, ord("-")] = 1
    acc[2] = True
    t[2, ord(".")] = 3
    t[3, ord("0")] = 4
    t[4, ord("0")] = 4
    acc[4] = True
    for r in range(k):
        for d in range(10):
            t[5 + r, ord("0") + d] = 5 + (r * 10 + d) % k
    acc[5] = True
    t[5, ord(".")] = 3
    return ByteDFA(t, acc, 0).minimize()
