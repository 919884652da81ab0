"""``constrain conformance``: the official JSON Schema test suite against us and the peers.

For every test group the schema is compiled once per engine; each test instance's JSON text
(``json.dumps``) must be accepted as a complete string exactly when the instance is valid.
An unsatisfiable schema (``false``) compiles to an empty language, which the CFG engine
refuses to build a matcher for; that counts as compiled and rejecting everything.
One table per draft: per keyword file and engine, compiled groups, correct accepts, correct
rejects, false accepts, false rejects, and cases whose schema did not compile
(unsupported).  Our decision goes through ``constrain.compile`` (CFG engine, byte-level
vocabulary) when it handles grammars, else through the Earley oracle of
:mod:`constrain.schema.oracle`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REMOTE_PREFIX = "http://localhost:1234/"
ENGINES = ("constrain", "llguidance", "xgrammar")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("conformance", help="run the JSON Schema test suite against constrain and peers")
    configure(p)
    p.set_defaults(run=run, func=run)
    return p


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--drafts", default="draft2020-12,draft7", help="comma-separated test folders")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: constrain,llguidance,xgrammar")
    p.add_argument("--files", default="", help="comma-separated keyword files (default: all)")
    p.add_argument("--optional", action="store_true", help="also run optional/format tests (formats asserted)")
    p.add_argument("--suite", default=None, help="path of json-schema-test-suite (default: shared data)")
    p.add_argument("--json", default=None, help="also write the raw counts as JSON here")
    p.add_argument("--no-progress", action="store_true")


# ---- engines ------------------------------------------------------------------------------------
class Ours:
    name = "constrain"

    def __init__(self, retrieve: Callable[[str], Any]) -> None:
        import warnings

        from constrain.errors import SchemaApproximationWarning

        # the table counts approximations itself (strict-mode column): no warning per schema
        warnings.simplefilter("ignore", SchemaApproximationWarning)
        self.retrieve = retrieve
        self.vocab = None
        self.use_engine = None

    def _engine_ok(self) -> bool:
        if self.use_engine is None:
            try:
                import constrain
                from constrain.vocab import Vocabulary

                self.vocab = Vocabulary.from_token_bytes([bytes([i]) for i in range(256)] + [None], eos_token_ids=(256,))
                c = constrain.json_schema({"type": "integer"}, whitespace="compact")
                m = constrain.compile(c, self.vocab).matcher()
                self.use_engine = bool(m.accepts_text("12")) and not constrain.compile(c, self.vocab).matcher().accepts_text("x")
            except Exception:
                self.use_engine = False
        return self.use_engine

    def compile(self, schema: Any, draft: str, assert_format: bool):
        from constrain.schema import json_schema

        c = json_schema(schema, draft=draft, assert_format=assert_format, retrieve=self.retrieve,
                        property_order="any", whitespace="flexible")
        if self._engine_ok():
            import constrain
            from constrain.errors import EmptyLanguageError

            try:
                compiled = constrain.compile(c, self.vocab)
            except EmptyLanguageError:
                return lambda text: False  # an unsatisfiable schema: nothing to accept
            return lambda text: compiled.matcher().accepts_text(text)
        from constrain.schema.oracle import EarleyRecognizer

        r = EarleyRecognizer(c.grammar)
        return r.accepts

    def strict_ok(self, schema: Any, draft: str, assert_format: bool) -> bool:
        from constrain.errors import ConstrainError
        from constrain.schema import json_schema

        try:
            json_schema(schema, draft=draft, assert_format=assert_format, retrieve=self.retrieve,
                        property_order="any", strict=True)
            return True
        except ConstrainError:
            return False


class LLGuidance:
    name = "llguidance"

    def __init__(self) -> None:
        import llguidance
        import llguidance.hf
        import transformers

        from constrain._data import tokenizer_path

        tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer_path("gpt2")))
        self.ll = llguidance
        self.tok = llguidance.hf.from_tokenizer(tok)

    def compile(self, schema: Any, draft: str, assert_format: bool):
        ll = self.ll
        g = ll.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": True})
        err, _warnings = ll.LLMatcher.validate_grammar_with_warnings(g, self.tok)
        if err:
            raise RuntimeError(str(err))
        m0 = ll.LLMatcher(self.tok, g, log_level=0)
        if m0.is_error():
            raise RuntimeError(m0.get_error())

        def accepts(text: str) -> bool:
            m = ll.LLMatcher(self.tok, g, log_level=0)
            ok = m.consume_tokens(self.tok.tokenize_str(text))
            return bool(ok) and not m.is_error() and m.is_accepting()

        return accepts


class XGrammar:
    name = "xgrammar"

    def __init__(self) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.compiler = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False)

    def compile(self, schema: Any, draft: str, assert_format: bool):
        xgr = self.xgr
        cg = self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=True, strict_mode=False)

        def accepts(text: str) -> bool:
            m = xgr.GrammarMatcher(cg, terminate_without_stop_token=True)
            return bool(m.accept_string(text)) and m.is_terminated()

        return accepts


# ---- runner ---------------------------------------------------------------------------------------
def make_retrieve(suite: Path) -> Callable[[str], Any]:
    remotes = suite / "remotes"

    def retrieve(uri: str) -> Any:
        if uri.startswith(REMOTE_PREFIX):
            path = remotes / uri[len(REMOTE_PREFIX):].split("#")[0]
            if path.is_file():
                return json.loads(path.read_text())
        raise LookupError(f"no such remote schema: {uri}")

    return retrieve


def run_suite(suite: Path, drafts: list[str], engines: list[str], files: list[str], optional: bool,
              progress: bool = True) -> dict:
    """Counts per draft -> file -> engine -> counter name; plus compile times per engine."""
    from tqdm import tqdm

    retrieve = make_retrieve(suite)
    impls: dict[str, Any] = {}
    for e in engines:
        try:
            impls[e] = {"constrain": lambda: Ours(retrieve), "llguidance": LLGuidance, "xgrammar": XGrammar}[e]()
        except Exception as ex:  # a missing optional peer is reported, not fatal
            print(f"engine {e} unavailable: {ex}")
    results: dict = {"counts": {}, "times": defaultdict(list), "strict_unsupported": {}, "false_rejects": [],
                     "warmup": {}}
    for ename, impl in impls.items():  # first-call costs (JIT, caches) are reported apart
        t0 = time.perf_counter()
        try:
            impl.compile({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}}, "2020-12", False)(
                '{"a": "x"}')
        except Exception:
            pass
        results["warmup"][ename] = time.perf_counter() - t0
    for draft in drafts:
        folder = suite / "tests" / draft
        paths = sorted(folder.glob("*.json"))
        if optional:
            paths += sorted((folder / "optional" / "format").glob("*.json"))
        if files:
            paths = [p for p in paths if p.stem in files]
        dname = draft.replace("draft", "")
        counts: dict = {}
        strict_unsup = 0
        for path in tqdm(paths, desc=draft, disable=not progress):
            fmt = "optional" in path.parts
            groups = json.loads(path.read_text())
            key = ("format/" if fmt else "") + path.stem
            per = counts.setdefault(key, {e: defaultdict(int) for e in impls})
            for grp in groups:
                schema = grp["schema"]
                tests = grp["tests"]
                for ename, impl in impls.items():
                    c = per[ename]
                    t0 = time.perf_counter()
                    try:
                        acc = impl.compile(schema, dname, fmt)
                    except Exception:
                        c["unsupported"] += len(tests)
                        continue
                    finally:
                        results["times"][ename].append(time.perf_counter() - t0)
                    c["compiled"] += 1
                    for tc in tests:
                        try:
                            got = acc(json.dumps(tc["data"]))
                        except Exception:
                            got = False
                        if tc["valid"]:
                            c["ok_accept" if got else "false_reject"] += 1
                            if not got and ename == "constrain":
                                results["false_rejects"].append((draft, key, grp["description"], tc["description"]))
                        else:
                            c["false_accept" if got else "ok_reject"] += 1
                if "constrain" in impls and not impls["constrain"].strict_ok(schema, dname, fmt):
                    strict_unsup += len(tests)
        results["counts"][draft] = counts
        results["strict_unsupported"][draft] = strict_unsup
    return results


def format_tables(results: dict) -> str:
    out = []
    cols = ("compiled", "ok_accept", "ok_reject", "false_accept", "false_reject", "unsupported")
    short = ("comp", "acc", "rej", "FA", "FR", "unsup")
    for draft, counts in results["counts"].items():
        engines = list(next(iter(counts.values())).keys()) if counts else []
        out.append(f"\n### {draft}\n")
        head = "| file | " + " | ".join(f"{e} {s}" for e in engines for s in short) + " |"
        out.append(head)
        out.append("|" + "---|" * (1 + len(engines) * len(short)))
        totals = {e: defaultdict(int) for e in engines}
        for key in sorted(counts):
            row = [key]
            for e in engines:
                for col in cols:
                    v = counts[key][e][col]
                    totals[e][col] += v
                    row.append(str(v))
            out.append("| " + " | ".join(row) + " |")
        out.append("| **total** | " + " | ".join(str(totals[e][c]) for e in engines for c in cols) + " |")
        out.append("")
        out.append("| engine | correct (acc+rej) | false accepts | false rejects | unsupported cases |")
        out.append("|---|---|---|---|---|")
        for e in engines:
            t = totals[e]
            out.append(f"| {e} | {t['ok_accept'] + t['ok_reject']} | {t['false_accept']} | {t['false_reject']} | "
                       f"{t['unsupported']} |")
        if draft in results.get("strict_unsupported", {}):
            out.append(f"\nconstrain strict mode raises UnsupportedSchemaError on the schemas of "
                       f"{results['strict_unsupported'][draft]} cases (lenient mode compiles them, over-approximating)")
    out.append("\n| engine | compile p50 ms | p99 ms | max ms | schemas | first call (warm-up) ms |")
    out.append("|---|---|---|---|---|---|")
    for e, ts in results["times"].items():
        if ts:
            ts = sorted(ts)
            p99 = ts[min(len(ts) - 1, int(0.99 * len(ts)))]
            w = results.get("warmup", {}).get(e, float("nan"))
            out.append(f"| {e} | {statistics.median(ts) * 1e3:.1f} | {p99 * 1e3:.1f} | {ts[-1] * 1e3:.1f} | {len(ts)} | "
                       f"{w * 1e3:.0f} |")
    if results.get("false_rejects"):
        out.append("\nconstrain false rejects:")
        for fr in results["false_rejects"]:
            out.append("  " + " / ".join(fr))
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from constrain._data import shared_path

    suite = Path(args.suite) if args.suite else shared_path("json-schema-test-suite")
    results = run_suite(
        suite,
        [d for d in args.drafts.split(",") if d],
        [e for e in args.engines.split(",") if e],
        [f for f in args.files.split(",") if f],
        args.optional,
        progress=not args.no_progress,
    )
    if "constrain" in [e for e in args.engines.split(",") if e]:
        ours = Ours(lambda uri: None)
        print("constrain decisions via", "constrain.compile (CFG engine, byte vocabulary)" if ours._engine_ok()
              else "the Earley oracle (constrain.schema.oracle)")
    print(format_tables(results))
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in results.items()}, indent=1, default=dict))
    return 1 if results["false_rejects"] else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="constrain conformance")
    configure(p)
    return run(p.parse_args(argv))
