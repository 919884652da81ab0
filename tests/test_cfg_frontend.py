"""Front ends (Lark, GBNF), typed grammar errors, and the Matcher contract of CFG matchers."""

from __future__ import annotations

import lark
import numpy as np
import pytest

import constrain
from constrain.cfg.earley import EarleyGrammar
from constrain.cfg.ir import GrammarBuilder
from constrain.errors import GrammarError, InvalidTokenError, TokenOutOfRange
from constrain.vocab import Vocabulary


def accepts(g, s: str) -> bool:
    eg = EarleyGrammar(g)
    p = eg.run(eg.start_pos(), s.encode())
    return p is not None and eg.accepting(p)


# ---- typed errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("start: foo", "foo"),
        ("start: A\nA: /[/", "A"),
        ('start: "a" B\nB: /x*/', "B"),  # zero-width terminal
        ('start: a\na: a "x"', "start"),  # empty language
        ("start: A\nA: /(?<=x)y/", "A"),  # unsupported construct (lookbehind)
    ],
)
def test_lark_errors_are_typed_and_name_the_rule(text: str, rule: str) -> None:
    with pytest.raises(GrammarError) as ei:
        g = constrain.grammar(text)
        EarleyGrammar(g).compile_all_terminals()
    assert ei.value.rule == rule, str(ei.value)


def test_lark_syntax_error_is_typed() -> None:
    with pytest.raises(GrammarError):
        constrain.grammar("start: (")
    with pytest.raises(GrammarError):
        constrain.grammar(b"start: 'a'")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("root ::= item\n", "root"),  # names the rule using it; the message names 'item'
        ('root ::= "a" | [b\n', "root"),
        ('item ::= "a"\n', "root"),
        ('root ::= "a" x\nx ::= "\\q"\n', "x"),
        ('root ::= "a"{3,1}\n', "root"),
    ],
)
def test_gbnf_errors_are_typed_and_name_the_rule(text: str, rule: str) -> None:
    with pytest.raises(GrammarError) as ei:
        constrain.gbnf(text)
    assert ei.value.rule == rule, str(ei.value)


def test_builder_undefined_symbol_names_rule() -> None:
    b = GrammarBuilder()
    r = b.rule([("nope",)], hint="obj")
    with pytest.raises(GrammarError) as ei:
        b.build(r)
    assert ei.value.rule == r


# ---- Lark features ---------------------------------------------------------------------------
def test_lark_features_match_lark() -> None:
    text = r"""
    start: kw item+ [tail] _sep?
    kw: "select"i
    ?item: WORD | NUM -> num | range_ | "(" item* ")"
    range_: LETTER
    tail: "end" | "stop"
    _sep: ";"
    LETTER: "a".."c"
    WORD.2: /[d-z]+/
    %import common.INT -> NUM
    %import common.WS
    %ignore WS
    """
    g = constrain.grammar(text)
    oracle = lark.Lark(text, parser="earley", lexer="dynamic_complete")
    for s in [
        "select a",
        "SeLeCt 12 (a b) end;",
        "select",
        "select d",
        "select a stop stop",
        "selecta",
        "select (a",
    ]:
        try:
            oracle.parse(s)
            want = True
        except lark.exceptions.LarkError:
            want = False
        assert accepts(g, s) == want, s


def test_lark_start_argument() -> None:
    g = constrain.grammar('a: "x" b\nb: "y"', start="b")
    assert accepts(g, "y") and not accepts(g, "xy")


# ---- GBNF features -----------------------------------------------------------------------------
def test_gbnf_features() -> None:
    g = constrain.gbnf(
        r"""
        root ::= greet ws name{1,3} "!"? tail
        greet ::= ("hi" | "hello")   # comment
        ws ::= [ \t]+
        name ::= [A-Z] [a-z]* "."
        tail ::= [^x\n] | "\x41\u00e9" | .
        """
    )
    assert accepts(g, "hi Bob.a")
    assert accepts(g, "hello  A.Bc.D.!Aé")
    assert accepts(g, "hi A.é")  # '.' matches any character
    assert not accepts(g, "hi A.B.C.D.z")  # at most 3 names
    assert not accepts(g, "hi a.z")
    assert not accepts(g, "hiA.z")


# ---- Matcher contract ----------------------------------------------------------------------------
def _toy():
    toks = [None, b"(", b")", b"1", b"+", b"12", b"1+", b" ", b"((", b"x", b"(1", b"1)"]
    vocab = Vocabulary.from_token_bytes(toks, eos_token_ids=[0])
    g = constrain.grammar('start: e\n?e: e "+" t | t\n?t: NUM | "(" e ")"\nNUM: /[0-9]+/\n%ignore " "')
    return vocab, constrain.compile(g, vocab)


def test_contract_advance_rollback_copy_eos() -> None:
    vocab, cg = _toy()
    m = cg.matcher()
    assert not m.is_accepting() and not m.check(0)
    m.advance(10)  # "(1"
    c = m.copy()
    m.advance(2)  # ")"
    assert m.is_accepting() and m.check(0) and m.mask()[0]
    assert not c.is_accepting() and c.num_tokens() == 1
    m.advance(0)
    assert m.is_terminated() and not m.mask().any() and not m.check(3)
    with pytest.raises(InvalidTokenError):
        m.advance(3)
    m.rollback(1)
    assert not m.is_terminated() and m.is_accepting()
    m.rollback(2)
    assert m.num_tokens() == 0 and m.shortest_completion_bytes() == 1
    with pytest.raises(InvalidTokenError):
        m.advance(2)
    with pytest.raises(TokenOutOfRange):
        m.check(99)
    with pytest.raises(ValueError):
        m.rollback(1)
    for t in range(len(vocab)):
        assert m.check(t) == bool(m.mask()[t])
    assert m.accepts_text("(1 + 12)") and not m.accepts_text("(1 +")
    assert m.accepts_prefix_bytes(b"(1 +") and not m.accepts_prefix_bytes(b"(x")


def test_shortest_completion_is_exact_on_small_grammar() -> None:
    """Compare with a breadth-first search over continuations from random reachable states."""
    g = constrain.grammar('start: "[" (e ("," e)*)? "]"\ne: NUM | "(" e "+" e ")"\nNUM: /[0-9]{2}/')
    vocab = Vocabulary.from_token_bytes([None, b"x"], eos_token_ids=[0])
    cg = constrain.compile(g, vocab)
    alphabet = b"[],()+0"
    for prefix in ["", "[", "[(", "[((0", "[00,(00+", "[00]", "[(00+00)"]:
        m = cg.matcher()
        from constrain.engine.cfg_matcher import CFGMatcher

        assert isinstance(m, CFGMatcher)
        m.advance_bytes(prefix.encode())
        got = m.shortest_completion_bytes()
        best = None
        frontier = [b""]
        for n in range(0, 12):
            if any(m.accepts_text(w) for w in frontier):
                best = n
                break
            # breadth-first over viable continuations only (dedupe by the recogniser state)
            nxt = {}
            for w in frontier:
                for c in alphabet:
                    w2 = w + bytes([c])
                    if m.accepts_prefix_bytes(w2):
                        p = cg.parser.run(m.pos, w2)
                        nxt.setdefault(p[0], w2)  # (the entries)
            frontier = list(nxt.values())
        assert got == best, (prefix, got, best)


def test_compile_accepts_grammar_and_masks_have_layout() -> None:
    vocab, cg = _toy()
    bm = np.zeros((len(vocab) + 31) // 32, dtype=np.int32)
    cg.matcher().fill_mask(bm)
    allowed = [t for t in range(len(vocab)) if (int(bm[t >> 5]) >> (t & 31)) & 1]
    assert allowed == [1, 3, 5, 6, 7, 8, 10]  # "(", "1", "12", "1+", " ", "((", "(1"
