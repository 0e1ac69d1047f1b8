"""The static encoder's token ids without the tokenizer's per-text work, exactly as it computes them.

A static model's embedding is a sum over the token ids of its text (:mod:`.static`), and most of
its time went to the ``tokenizers`` pipeline (about 2 ms per 1,500-character RouterBench prompt
on a loaded EPYC core: normalising, splitting and WordPiece with offset tracking), not to the sum.
For the tokenizer the static models have here (BERT's: ``BertNormalizer`` lowercasing, cleaning
and stripping accents, ``BertPreTokenizer``, ``WordPiece``; the distilled MiniLM's), every step is
local to a word, so on ASCII text the ids are those of its words, in order:

- cleaning removes the ASCII control characters but tab, newline and carriage return (those are
  whitespace), lowercasing is ``str.lower``, accent stripping and CJK spacing change nothing;
- the pre-tokenizer splits on whitespace and isolates each punctuation character (every printable
  ASCII character that is not a letter or digit), so the words are the runs of letters and digits
  and the punctuation characters one by one;
- WordPiece tokenises each word on its own: :class:`FastIds` asks the tokenizer once per distinct
  word (a bounded cache) and concatenates, then keeps the first ``max_length`` ids (the tokenizer's
  truncation).

A text with any non-ASCII character, or one holding an added token's text (``[PAD]``, ``[UNK]``:
matched before normalisation), goes through the tokenizer as before. Another tokenizer
configuration disables the fast path (:meth:`FastIds.for_tokenizer` returns None). Tests compare
the ids with the tokenizer's on every prompt of the shared tables and on random ASCII text.
"""

from __future__ import annotations

import itertools
import json
import re

__all__ = ["FastIds"]

_CONTROLS = "".join(chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127))
_DELETE_CONTROLS = str.maketrans("", "", _CONTROLS)
_HAS_CONTROL = re.compile("[" + re.escape(_CONTROLS) + "]")
_WORDS = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")  # after lowercasing: letter/digit runs, punctuation
_NORMALIZER = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None,
               "lowercase": True}
MAX_WORDS = 1 << 20  # cached words (then the cache starts again)


def _spans(words: list[str], limit: int):
    """(start, stop) of consecutive runs of ``words`` of at most ``limit`` characters joined by spaces
    (a longer word alone)."""
    start, chars = 0, -1
    for i, w in enumerate(words):
        if i > start and chars + 1 + len(w) > limit:
            yield start, i
            start, chars = i, -1
        chars += 1 + len(w)
    if words:
        yield start, len(words)


class FastIds:
    """Token ids of texts, as ``tokenizer.encode_batch_fast(texts, add_special_tokens=False)`` with
    the tokenizer's truncation; use :meth:`for_tokenizer` (None for a tokenizer it does not mirror)."""

    def __init__(self, tokenizer, max_length: int | None, added: list[str]):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.added = tuple(added)
        self._words: dict[str, tuple] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer) -> FastIds | None:
        """A fast path for a BERT WordPiece tokenizer configured as the static models' (see the module
        docstring), else None."""
        try:
            spec = json.loads(tokenizer.to_str())
        except (AttributeError, ValueError):
            return None
        norm, pre, model = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec.get("model") or {}
        if ({k: norm.get(k) for k in _NORMALIZER} != _NORMALIZER or pre.get("type") != "BertPreTokenizer"
                or model.get("type") != "WordPiece"):
            return None
        trunc = spec.get("truncation")
        if trunc is not None and (trunc.get("direction") != "Right" or trunc.get("stride") != 0):
            return None
        added = [t["content"] for t in spec.get("added_tokens") or []]
        return cls(tokenizer, None if trunc is None else int(trunc["max_length"]), added)

    def fast(self, text: str) -> bool:
        """Whether :meth:`ids` computes ``text``'s ids itself (ASCII and no added token's text)."""
        return text.isascii() and not any(a in text for a in self.added)

    def _add_words(self, words) -> None:
        """Tokenise the words not cached yet (one tokenizer call) and cache their ids."""
        cache, words = self._words, list(dict.fromkeys(words))
        missing = [w for w in words if w not in cache]
        if len(cache) + len(missing) > MAX_WORDS:  # full: start again (with these words)
            cache.clear()
            missing = words
        # The new words of a request, joined by spaces into texts of at most ``max_length`` characters
        # (a token covers at least one character: never truncated), each encoded in one call and cut
        # back into words by the encoding's word index: ~4x cheaper than encode_batch_fast on a word
        # list, whose thread-pool dispatch dominated a lone request's new words (0.6 ms for 30).
        limit = self.max_length or 512
        for start, stop in _spans(missing, limit):
            enc = self.tokenizer.encode(" ".join(missing[start:stop]), add_special_tokens=False)
            parts = [[] for _ in range(stop - start)]
            for token, word in zip(enc.ids, enc.word_ids):
                parts[word].append(token)
            for w, part in zip(missing[start:stop], parts):
                cache[w] = tuple(part)

    def _join(self, parts) -> list:
        ids = list(itertools.chain.from_iterable(parts))
        return ids if self.max_length is None else ids[: self.max_length]

    def ids(self, texts: list[str]) -> list:
        """Each text's token ids (a list per text), the tokenizer's for texts :meth:`fast` refuses."""
        out: list = [None] * len(texts)
        slow, new, cache = [], {}, self._words
        for i, text in enumerate(texts):
            if not self.fast(text):
                slow.append(i)
                continue
            if _HAS_CONTROL.search(text):
                text = text.translate(_DELETE_CONTROLS)
            words = _WORDS.findall(text.lower())
            try:
                out[i] = self._join([cache[w] for w in words])
            except KeyError:  # words not seen yet: one tokenizer call for all the texts' new words
                new[i] = words
        if new:
            self._add_words(itertools.chain.from_iterable(new.values()))
            for i, words in new.items():
                out[i] = self._join([cache[w] for w in words])
        if slow:
            encs = self.tokenizer.encode_batch_fast([texts[i] for i in slow], add_special_tokens=False)
            for i, enc in zip(slow, encs):
                out[i] = enc.ids
        return out
