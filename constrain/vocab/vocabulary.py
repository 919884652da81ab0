"""Exact token byte strings for Hugging Face tokenizers.

A constraint speaks about bytes, a model about token ids; the bridge must be exact or masks
are silently wrong.  We recover each token's bytes from the tokenizer's model (not from
``decode``, which strips, merges and replaces): byte-level BPE (GPT-2, Llama 3, Qwen 2)
through the inverse of the byte-to-unicode table, SentencePiece with byte fallback
(Llama 2, Phi-3) through ``▁`` -> space and ``<0xNN>`` -> one byte.  Special tokens have no
text (``None``); EOS ids are kept separately because constraints allow them only at the end.

Building a 128k vocabulary in Python takes about a second, so the arrays are cached on
disk (``$CONSTRAIN_CACHE``, default ``~/.cache/constrain``) keyed by a hash of the
tokenizer definition.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from constrain.errors import VocabularyError
from constrain.vocab.trie import TokenTrie

_CACHE_FORMAT = 3
_MEMORY: dict[str, Vocabulary] = {}
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table (a well-known constant mapping)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}


def cache_dir() -> Path:
    return Path(os.environ.get("CONSTRAIN_CACHE", Path.home() / ".cache" / "constrain"))


def _find_types(node: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        if "type" in node and isinstance(node["type"], str):
            out.add(node["type"])
        for v in node.values():
            out |= _find_types(v)
    elif isinstance(node, list):
        for v in node:
            out |= _find_types(v)
    return out


class Vocabulary:
    """Token id -> exact bytes, plus the byte trie kernels walk.

    Build with :meth:`from_hf`, :meth:`from_pretrained` or :meth:`from_token_bytes`.
    """

    def __init__(
        self,
        token_bytes: list[bytes | None],
        eos_token_ids: tuple[int, ...] = (),
        *,
        bos_token_id: int | None = None,
        adds_bos: bool = False,
        prefix_space: str = "none",
        kind: str = "custom",
        trie: TokenTrie | None = None,
    ) -> None:
        self._tokens = token_bytes
        self.size = len(token_bytes)  # len(vocab) as a plain attribute: matchers range-check every token
        for e in eos_token_ids:
            if not 0 <= e < len(token_bytes):
                raise VocabularyError(f"EOS id {e} is outside the vocabulary of {len(token_bytes)} tokens")
        self.eos_token_ids = tuple(int(e) for e in eos_token_ids)
        self.bos_token_id = bos_token_id
        self.adds_bos = adds_bos
        if prefix_space not in ("none", "always", "if-absent"):
            raise VocabularyError(f"unknown prefix_space policy {prefix_space!r}")
        self.prefix_space = prefix_space
        self.kind = kind
        self._trie = trie
        self._hf: Any = None
        self._exact_backend: Any = None
        self._tokenizer_json: str | None = None
        self._tokenizer_file: Path | None = None

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_token_bytes(
        cls, token_bytes: list[bytes | None], eos_token_ids: tuple[int, ...] | list[int] = ()
    ) -> Vocabulary:
        """A vocabulary from explicit byte strings (toy models, tests); ``None`` marks a special token."""
        toks: list[bytes | None] = []
        for i, b in enumerate(token_bytes):
            if b is not None and not isinstance(b, bytes | bytearray):
                raise VocabularyError(f"token {i}: expected bytes or None, got {type(b).__name__}")
            toks.append(None if b is None or i in set(eos_token_ids) else bytes(b))
        return cls(toks, tuple(eos_token_ids))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, vocab_size: int | None = None) -> Vocabulary:
        """Load the Hugging Face tokenizer at ``path`` (a folder with tokenizer.json) and build."""
        p = Path(path)
        if not p.exists():
            raise VocabularyError(f"no tokenizer at {p}")
        # Fast path: key the disk cache on the files themselves, so a cached vocabulary
        # loads without constructing the Hugging Face tokenizer (that alone takes seconds).
        files = [p / "tokenizer.json", p / "tokenizer_config.json"]
        key = None
        if files[0].exists():
            h = hashlib.sha256(f"{_CACHE_FORMAT}|file|{vocab_size}|".encode())
            for f in files:
                if f.exists():
                    h.update(f.read_bytes())
            key = h.hexdigest()[:32]
            hit = _MEMORY.get(key) or cls._load_cache(key)
            if hit is not None:
                _MEMORY[key] = hit
                vocab = hit._shallow_copy()
                vocab._tokenizer_file = files[0]
                return vocab
        vocab = cls.from_hf(_load_hf_tokenizer(p), vocab_size=vocab_size)
        if key is not None:
            vocab._save_cache(key)
            _MEMORY[key] = vocab
        return vocab

    @classmethod
    def from_hf(
        cls,
        tokenizer: Any,
        *,
        vocab_size: int | None = None,
        eos_token_ids: tuple[int, ...] | None = None,
        use_cache: bool = True,
    ) -> Vocabulary:
        """Exact bytes of every id of a (fast) Hugging Face tokenizer.

        ``vocab_size`` pads with special (non-text) ids when the model's embedding matrix is
        larger than the tokenizer (common for Qwen and Phi models).
        """
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        if backend is None:
            raise VocabularyError(
                f"{type(tokenizer).__name__} has no fast (tokenizers) backend; load it with use_fast=True"
            )
        spec = backend.to_str()
        n = max(len(tokenizer), backend.get_vocab_size(with_added_tokens=True))
        if vocab_size is not None:
            if vocab_size < n:
                raise VocabularyError(f"vocab_size {vocab_size} is smaller than the tokenizer's {n} tokens")
            n = vocab_size
        eos = eos_token_ids
        if eos is None:
            eos = () if tokenizer.eos_token_id is None else (int(tokenizer.eos_token_id),)
        key = hashlib.sha256(f"{_CACHE_FORMAT}|{n}|{eos}|".encode() + spec.encode()).hexdigest()[:32]
        vocab = _MEMORY.get(key) if use_cache else None
        if vocab is None and use_cache:
            vocab = cls._load_cache(key)
        if vocab is None:
            vocab = cls._build_from_spec(spec, n, tuple(eos), tokenizer)
            if use_cache:
                vocab._save_cache(key)
        else:
            vocab = vocab._shallow_copy()
        vocab.hf_tokenizer = tokenizer
        vocab._tokenizer_json = spec
        if use_cache:
            _MEMORY[key] = vocab
        return vocab

    def _shallow_copy(self) -> Vocabulary:
        v = Vocabulary(
            self._tokens,
            self.eos_token_ids,
            bos_token_id=self.bos_token_id,
            adds_bos=self.adds_bos,
            prefix_space=self.prefix_space,
            kind=self.kind,
            trie=self._trie,
        )
        return v

    @classmethod
    def _build_from_spec(cls, spec: str, n: int, eos: tuple[int, ...], tokenizer: Any) -> Vocabulary:
        d = json.loads(spec)
        model = d.get("model", {})
        types = _find_types(d.get("pre_tokenizer")) | _find_types(d.get("decoder"))
        byte_level = "ByteLevel" in types
        sentencepiece = bool(model.get("byte_fallback")) or "Metaspace" in types or _has_metaspace_replace(d)
        if not byte_level and not sentencepiece:
            raise VocabularyError(
                f"unsupported tokenizer kind (model {model.get('type')!r}, decoder types {sorted(types)}): "
                "only byte-level BPE and SentencePiece with byte fallback are supported"
            )
        added = {int(a["id"]): a for a in d.get("added_tokens", [])}
        id_to_tok: dict[int, str] = {}
        vocab_map = model.get("vocab")
        if isinstance(vocab_map, dict):
            id_to_tok = {int(i): t for t, i in vocab_map.items()}
        elif isinstance(vocab_map, list):  # Unigram: [[piece, score], ...]
            id_to_tok = {i: p[0] for i, p in enumerate(vocab_map)}
        tokens: list[bytes | None] = [None] * n
        for i in range(n):
            a = added.get(i)
            if a is not None:
                tokens[i] = None if a.get("special", False) else a["content"].encode("utf-8")
                continue
            t = id_to_tok.get(i)
            if t is None:
                continue
            if byte_level:
                try:
                    tokens[i] = bytes(_UNICODE_TO_BYTE[c] for c in t)
                except KeyError:
                    raise VocabularyError(f"token {i} ({t!r}) is not in the byte-level alphabet") from None
            else:
                m = _BYTE_FALLBACK.match(t)
                tokens[i] = bytes([int(m.group(1), 16)]) if m else t.replace("\u2581", " ").encode("utf-8")
        for e in eos:
            if 0 <= e < n:
                tokens[e] = None
        bos = getattr(tokenizer, "bos_token_id", None)
        adds_bos = False
        prefix_space = "none"
        try:
            probe = tokenizer.encode("a")
            if probe and bos is not None and probe[0] == bos:
                adds_bos = True
                probe = probe[1:]
            if b"".join(tokens[i] or b"" for i in probe) == b" a":
                # SentencePiece's dummy prefix: some tokenizers add it always (a Prepend
                # normalizer), others only when the text does not already start with a space
                probe2 = tokenizer.encode(" a")[1 if adds_bos else 0 :]
                spaced = b"".join(tokens[i] or b"" for i in probe2)
                prefix_space = "always" if spaced == b"  a" else "if-absent"
        except Exception:  # a tokenizer that cannot encode still has a usable vocabulary
            pass
        return cls(
            tokens,
            eos,
            bos_token_id=bos,
            adds_bos=adds_bos,
            prefix_space=prefix_space,
            kind="byte-level" if byte_level else "sentencepiece",
        )

    @property
    def hf_tokenizer(self) -> Any:
        """The Hugging Face tokenizer (loaded on first use when the vocabulary came from cache)."""
        if self._hf is None and self._tokenizer_file is not None:
            self._hf = _load_hf_tokenizer(self._tokenizer_file.parent)
        return self._hf

    @hf_tokenizer.setter
    def hf_tokenizer(self, tok: Any) -> None:
        self._hf = tok

    # ---- disk cache -----------------------------------------------------------------------------
    def _save_cache(self, key: str) -> None:
        try:
            d = cache_dir()
            d.mkdir(parents=True, exist_ok=True)
            lens = np.array([-1 if b is None else len(b) for b in self._tokens], dtype=np.int64)
            data = np.frombuffer(b"".join(b for b in self._tokens if b), dtype=np.uint8)
            meta = json.dumps(
                {
                    "eos": list(self.eos_token_ids),
                    "bos": self.bos_token_id,
                    "adds_bos": self.adds_bos,
                    "prefix_space": self.prefix_space,
                    "kind": self.kind,
                }
            )
            tmp = d / f"vocab-{key}.{os.getpid()}.tmp.npz"
            np.savez(tmp, lens=lens, data=data, meta=np.array(meta), **self.trie.arrays())
            os.replace(tmp, d / f"vocab-{key}.npz")
        except OSError:
            pass  # a read-only home still works, just without the cache

    @classmethod
    def _load_cache(cls, key: str) -> Vocabulary | None:
        f = cache_dir() / f"vocab-{key}.npz"
        if not f.exists():
            return None
        try:
            with np.load(f) as z:
                arrs = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None
        lens = arrs["lens"]
        raw = arrs["data"].tobytes()
        tokens: list[bytes | None] = []
        pos = 0
        for n in lens.tolist():
            if n < 0:
                tokens.append(None)
            else:
                tokens.append(raw[pos : pos + n])
                pos += n
        meta = json.loads(str(arrs["meta"]))
        return cls(
            tokens,
            tuple(meta["eos"]),
            bos_token_id=meta["bos"],
            adds_bos=meta["adds_bos"],
            prefix_space=meta["prefix_space"],
            kind=meta["kind"],
            trie=TokenTrie.from_arrays(arrs),
        )

    # ---- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size

    def token_bytes(self, token_id: int) -> bytes:
        """Exact bytes of ``token_id`` (``b""`` for special tokens, EOS included)."""
        return self._tokens[token_id] or b""

    def is_special(self, token_id: int) -> bool:
        return self._tokens[token_id] is None

    @property
    def all_token_bytes(self) -> list[bytes | None]:
        return self._tokens

    @cached_property
    def token_blob(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, blob)``: every token's bytes end to end (uint8) and where each starts
        (int64, ``size + 1`` items; special tokens are empty), the form compiled code reads a
        token's bytes in without a Python object per token."""
        lens = np.fromiter((len(b) if b else 0 for b in self._tokens), dtype=np.int64, count=self.size)
        offsets = np.zeros(self.size + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        blob = np.frombuffer(b"".join(b for b in self._tokens if b), dtype=np.uint8)
        return offsets, blob

    @property
    def trie(self) -> TokenTrie:
        if self._trie is None:
            self._trie = TokenTrie.build(self._tokens)
        return self._trie

    @cached_property
    def eos_mask_words(self) -> np.ndarray:
        """uint32 bitmask words with just the EOS bits set."""
        words = np.zeros((len(self) + 31) // 32, dtype=np.uint32)
        for e in self.eos_token_ids:
            words[e >> 5] |= np.uint32(1 << (e & 31))
        return words

    def decode_bytes(self, ids) -> bytes:
        return b"".join(self._tokens[int(i)] or b"" for i in ids)

    def hf_prefix(self, text: str) -> bytes:
        """The bytes ``tokenizer.encode(text)`` puts before ``text`` (SentencePiece's dummy space)."""
        if not text:
            return b""
        if self.prefix_space == "always" or (self.prefix_space == "if-absent" and not text.startswith(" ")):
            return b" "
        return b""

    def text_of_hf_encoding(self, ids: list[int], text: str) -> bytes:
        """The text bytes of ``tokenizer.encode(text)``: BOS dropped, dummy prefix space removed.

        Raises :class:`VocabularyError` if the ids do not start the way this tokenizer's
        known artefacts say they must, so a changed tokenizer cannot go unnoticed.
        """
        ids = list(ids)
        if self.adds_bos:
            if not ids or ids[0] != self.bos_token_id:
                raise VocabularyError("expected the encoding to start with BOS")
            ids = ids[1:]
        data = self.decode_bytes(ids)
        prefix = self.hf_prefix(text)
        if not data.startswith(prefix):
            raise VocabularyError(f"expected the encoding to start with {prefix!r}")
        return data[len(prefix) :]

    # ---- exact encoding -----------------------------------------------------------------------------
    def encode(self, text: str | bytes) -> list[int]:
        """Token ids whose bytes concatenate to exactly ``text`` (no BOS, no prefix space).

        Uses the tokenizer's own segmentation (so ids look like what a model would produce
        mid-sequence) and falls back to greedy longest-match over the trie whenever that
        would not reproduce the bytes (e.g. text that spells a special token).
        """
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if isinstance(text, str) and self._backend() is not None:
            ids = self._backend().encode(text, add_special_tokens=False).ids
            if self.decode_bytes(ids) == data and not any(self._tokens[i] is None for i in ids):
                return list(ids)
        return self.encode_greedy(data)

    def encode_greedy(self, data: bytes) -> list[int]:
        """Greedy longest-match tokenisation over the trie (always exact when single bytes exist)."""
        trie = self.trie
        out: list[int] = []
        pos = 0
        byte_arr, nxt, ts, te, toks = trie.byte, trie.next, trie.tok_start, trie.tok_end, trie.tokens
        while pos < len(data):
            node = 0
            i = 1
            best = -1
            best_len = 0
            depth = 0
            end = trie.n_nodes
            while i < end and pos + depth < len(data):
                if byte_arr[i] == data[pos + depth]:
                    depth += 1
                    if te[i] > ts[i]:
                        best = int(toks[ts[i]])
                        best_len = depth
                    node = i
                    end = int(nxt[node])
                    i = node + 1
                else:
                    i = int(nxt[i])
            if best < 0:
                raise VocabularyError(f"byte {data[pos]:#04x} at offset {pos} has no token")
            out.append(best)
            pos += best_len
        return out

    def _backend(self) -> Any:
        """The tokenizers backend with prefix-space insertion disabled (built once)."""
        if self._exact_backend is None and self._tokenizer_json is None and self._tokenizer_file is not None:
            self._tokenizer_json = self._tokenizer_file.read_text(encoding="utf-8")
        if self._exact_backend is None and self._tokenizer_json is not None:
            from tokenizers import Tokenizer

            d = json.loads(self._tokenizer_json)
            if self.prefix_space != "none":
                _strip_prefix_space(d)
            d["post_processor"] = None
            self._exact_backend = Tokenizer.from_str(json.dumps(d))
        return self._exact_backend

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, kind={self.kind!r}, eos={self.eos_token_ids})"


def _has_metaspace_replace(d: dict) -> bool:
    return "\u2581" in json.dumps(d.get("decoder"), ensure_ascii=False)


def _strip_prefix_space(d: dict) -> None:
    """Disable SentencePiece's dummy prefix in a tokenizer.json dict (Prepend / Metaspace)."""
    norm = d.get("normalizer")
    if isinstance(norm, dict):
        if norm.get("type") == "Prepend":
            d["normalizer"] = None
        elif norm.get("type") == "Sequence":
            norm["normalizers"] = [x for x in norm["normalizers"] if x.get("type") != "Prepend"]

    def fix(pt: Any) -> None:
        if isinstance(pt, dict):
            if pt.get("type") == "Metaspace":
                pt["prepend_scheme"] = "never"
                pt["add_prefix_space"] = False
            for v in pt.values():
                fix(v)
        elif isinstance(pt, list):
            for v in pt:
                fix(v)

    fix(d.get("pre_tokenizer"))


def _load_hf_tokenizer(path: Path) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        raise VocabularyError("transformers is required to load a tokenizer") from exc
    return AutoTokenizer.from_pretrained(str(path))
