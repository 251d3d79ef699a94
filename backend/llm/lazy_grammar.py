"""Grammar-constrained sampling in llama.cpp's own order: sample first, check the grammar after.

llama-cpp-python puts the grammar at the head of its sampler chain, so for every generated token
the grammar is matched against the whole vocabulary (152k tokens for Qwen2.5) before top-k even
runs. On this machine's two cores that made a 20-token forced tool call take ≈ 20 s on the 1.5B
model, ≈ 1 s per token, while unconstrained tokens take ≈ 0.1 s.

llama.cpp's server and CLI (``common_sampler_sample`` with ``grammar_first = false``) do it the
other way round, and so does ``LazyGrammarSampler``:

1. run the ordinary chain (penalties, top-k, top-p, min-p, temperature, dist / greedy) on the
   logits and take its token;
2. ask the grammar about that one token only;
3. if the grammar rejects it, start again from the logits with the grammar applied to every token
   first, then the chain (exactly the old order) — so a rejected token costs what every token cost
   before;
4. accept the final token into both the grammar and the chain.

The output always satisfies the grammar. Under greedy decoding it is the same token sequence as
the grammar-first order (the most likely token overall, when the grammar allows it, is also the
most likely allowed one); with sampling the distribution is llama.cpp's own.
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import Any

import numpy as np

#: numpy twin of ``llama_token_data`` {int32 id; float logit; float p}
#: on a rejection, the grammar first looks at this many of the most likely tokens only
CANDIDATES = 512
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class LazyGrammarSampler:
    """A drop-in for llama-cpp-python's ``LlamaSampler`` in ``Llama.generate`` (``sample(ctx, idx)``).

    ``chain`` is the sampler chain built without the grammar; ``grammar`` a ``LlamaGrammar``.
    """

    def __init__(self, chain: Any, model: Any, grammar: Any, n_vocab: int, *, temp: float, top_k: int) -> None:
        import llama_cpp

        self._cpp = llama_cpp
        self.chain = chain
        self._grammar = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
        if not self._grammar:
            raise ValueError("llama.cpp could not build the grammar sampler")
        self._n_vocab = n_vocab
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._cells = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._few = np.zeros(CANDIDATES, dtype=_TOKEN_DATA)
        self._one: Any = (llama_cpp.llama_token_data * 1)()
        #: allowed tokens among the candidates that make the short pass exact (None: always the full pass)
        self._needed: int | None = 1 if temp == 0 else (top_k if 0 < top_k <= CANDIDATES // 2 else None)
        #: tokens sampled / tokens the grammar rejected (each rejection re-samples over the whole vocabulary)
        self.sampled = 0
        self.rejected = 0
        self.full_passes = 0

    def _array(self, ctx: Any, idx: int) -> Any:
        """The logits of output ``idx`` as a fresh ``llama_token_data_array`` over the vocabulary."""
        cpp = self._cpp
        logits = cpp.llama_get_logits_ith(ctx.ctx, idx)
        self._cells["id"] = self._ids  # the chain sorts the cells in place
        self._cells["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        self._cells["p"] = 0.0
        data = self._cells.ctypes.data_as(ctypes.POINTER(cpp.llama_token_data))
        return cpp.llama_token_data_array(data=data, size=self._n_vocab, selected=-1, sorted=False)

    def _selected(self, arr: Any) -> int:
        if not 0 <= arr.selected < arr.size:
            raise RuntimeError("the sampler chain selected no token")
        return int(arr.data[arr.selected].id)

    def allows(self, token: int) -> bool:
        """Whether the grammar, in its current state, accepts ``token`` next."""
        cpp = self._cpp
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        one = cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        cpp.llama_sampler_apply(self._grammar, ctypes.byref(one))
        return not math.isinf(self._one[0].logit)

    def _candidates(self, ctx: Any, idx: int) -> Any | None:
        """The ``CANDIDATES`` most likely tokens, the grammar applied to them; None when too few pass.

        Enough means that the chain over these cells chooses what it would over the whole
        grammar-filtered vocabulary: one allowed token for greedy decoding, ``top_k`` for top-k
        sampling (any allowed token outside them is less likely than every one of them)."""
        if self._needed is None:
            return None
        cpp = self._cpp
        logits = np.ctypeslib.as_array(cpp.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        n = min(CANDIDATES, self._n_vocab)
        top = np.argpartition(logits, -n)[-n:]
        cells = self._few[:n]
        cells["id"] = top
        cells["logit"] = logits[top]
        cells["p"] = 0.0
        data = cells.ctypes.data_as(ctypes.POINTER(cpp.llama_token_data))
        arr = cpp.llama_token_data_array(data=data, size=n, selected=-1, sorted=False)
        cpp.llama_sampler_apply(self._grammar, ctypes.byref(arr))
        if int(np.count_nonzero(np.isfinite(cells["logit"]))) < self._needed:
            return None
        return arr

    def sample(self, ctx: Any, idx: int = -1) -> int:
        cpp = self._cpp
        chain = self.chain.sampler
        arr = self._array(ctx, idx)
        cpp.llama_sampler_apply(chain, ctypes.byref(arr))
        token = self._selected(arr)
        self.sampled += 1
        if not self.allows(token):
            self.rejected += 1
            arr = self._candidates(ctx, idx)
            if arr is None:  # the grammar over the whole vocabulary, as before
                self.full_passes += 1
                arr = self._array(ctx, idx)
                cpp.llama_sampler_apply(self._grammar, ctypes.byref(arr))
            cpp.llama_sampler_apply(chain, ctypes.byref(arr))
            token = self._selected(arr)
        cpp.llama_sampler_accept(self._grammar, token)
        cpp.llama_sampler_accept(chain, token)
        return token

    def close(self) -> None:
        grammar, self._grammar = self._grammar, None
        if grammar:
            self._cpp.llama_sampler_free(grammar)
        self.chain.close()

    def __del__(self) -> None:
        self.close()


@functools.cache
def lazy_grammar_llama_class() -> type[Any]:
    """``llama_cpp.Llama`` with ``LazyGrammarSampler`` for grammar-constrained generation."""
    from llama_cpp import Llama

    class LazyGrammarLlama(Llama):
        #: False: llama-cpp-python's own grammar-first order (the reference the tests compare with)
        lazy_grammar = True

        def _init_sampler(self, **kwargs: Any) -> Any:  # type: ignore[override]  # Llama.generate passes keywords only
            grammar = kwargs.pop("grammar", None)
            if grammar is None or not self.lazy_grammar:
                return super()._init_sampler(grammar=grammar, **kwargs)
            chain = super()._init_sampler(grammar=None, **kwargs)
            temp, top_k = float(kwargs.get("temp", 0.8)), int(kwargs.get("top_k", 40))
            return LazyGrammarSampler(chain, self._model, grammar, self._n_vocab, temp=temp, top_k=top_k)

    return LazyGrammarLlama
