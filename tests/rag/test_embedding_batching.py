"""Length-bucketed batching gives the vectors the previous fixed-batch embedder gave (issue 15, item 2)."""

from __future__ import annotations

import random

import numpy as np

from backend.rag.embeddings import MAX_SEQ_LENGTH, OnnxMiniLM

WORDS = ["retrieval", "vector", "paragraph", "protein", "cell", "mutation", "answer", "index", "query", "model", "cosine", "batch", "ﬁeld", "study", "result", "patient", "dose", "effect"]


def sample_texts(n: int = 24, seed: int = 5) -> list[str]:
    """Short queries, ~1000-character chunks and one past the 256-token truncation, mixed."""
    rng = random.Random(seed)
    lengths = [rng.choice([3, 12, 60, 160, 400]) for _ in range(n)]
    return [" ".join(rng.choice(WORDS) for _ in range(k)) for k in lengths] + [""]


def previous_embed(embedder: OnnxMiniLM, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """The embedder as it was: one tokenizer-padded batch of up to 64 texts sorted by characters."""
    embedder._load()
    tokenizer = embedder._tokenizer.__class__.from_str(embedder._tokenizer.to_str())
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for begin in range(0, len(order), batch_size):
        idx = order[begin : begin + batch_size]
        enc = tokenizer.encode_batch([texts[i] or " " for i in idx])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in embedder._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = embedder._session.run(None, feeds)[0]
        w = mask[:, :, None].astype(np.float32)
        pooled = (hidden * w).sum(axis=1) / w.sum(axis=1)
        out[idx] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return out


def test_bucketed_vectors_match_the_previous_embedder() -> None:
    """The packaged (fp32) graph, where padding cannot change a row; the int8 graph runs texts
    one per call (tests/rag/test_embedding_int8.py)."""
    texts = sample_texts()
    embedder = OnnxMiniLM(token_budget=512, precision="fp32")
    new = embedder.embed(texts)
    old = previous_embed(embedder, texts)
    cosines = (new * old).sum(axis=1)
    assert new.shape == (len(texts), 384)
    assert float(cosines.min()) >= 0.999, cosines.min()
    assert np.allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-5)


def test_batches_respect_the_token_budget_and_keep_every_text_once() -> None:
    embedder = OnnxMiniLM(batch_size=8, token_budget=512)
    lengths = [5, 256, 40, 40, 100, 7, 256, 130, 3, 60, 60, 60, 60, 60, 60, 60, 60, 60]
    groups = embedder.batches(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= 8
        assert len(group) == 1 or len(group) * max(lengths[i] for i in group) <= 512
    # a text's vector does not depend on what it is batched with
    texts = sample_texts(10)
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert float((alone * embedder.embed(texts)).sum(axis=1).min()) >= 0.9999


def test_token_counts_include_special_tokens_and_truncate() -> None:
    embedder = OnnxMiniLM()
    counts = embedder.token_counts(["hello", " ".join(["word"] * 600)])
    assert counts[0] == 3  # [CLS] hello [SEP]
    assert counts[1] == MAX_SEQ_LENGTH
