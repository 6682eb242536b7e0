"""Multilingual text tokenizer (Hugging Face `tokenizers`): load any tokenizer.json or train one.

On clusters one points the config at an exported tokenizer.json (MetaCLIP 2 uses XLM-V's
901,629-token vocabulary); for tests and `make train` we train a small BPE over the captions.
The trained tokenizer NFKC-normalises and lowercases, splits on whitespace with a Metaspace
marker (so no-space scripts like Chinese are learned as character merges) and falls back to
<unk>; decode() restores the normalised text, which makes a round trip exact for it.
Token id sequences are framed <s> ... </s>, truncated to the context length with </s> kept
last, and right-padded with <pad>; the text tower pools at the last non-pad position.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from curation import storage
from curation.storage import atomic_local_path

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 1,
                    max_token_length: int = 6) -> HFTokenizer:
    """A BPE tokenizer trained on texts (any script); ids 0..3 are <pad>, <s>, </s>, <unk>.

    max_token_length caps merges (in characters) so that no-space scripts, which reach the
    tokenizer as one long "word", still split into reusable pieces on a small corpus.
    """
    tok = HFTokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS,
                                  max_token_length=max_token_length, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


class Tokenizer:
    """Fixed-length token id tensors for a text tower; picklable (holds the JSON, builds lazily)."""

    def __init__(self, path_or_json: str | os.PathLike, context_length: int):
        s = str(path_or_json)
        if s.lstrip().startswith("{"):
            self._json = s
        else:
            p = Path(s)
            if not p.is_file():
                raise FileNotFoundError(f"tokenizer file not found: {p}")
            self._json = p.read_text(encoding="utf-8")
        if context_length < 3:
            raise ValueError("context_length must leave room for <s>, a token and </s>")
        self.context_length = int(context_length)
        self._tok: HFTokenizer | None = None
        tok = self.hf
        vocab = tok.get_vocab()

        def first(*names):
            for n in names:
                if n in vocab:
                    return vocab[n]
            return None

        self.pad_id = first("<pad>", "[PAD]", "<|endoftext|>")
        self.bos_id = first("<s>", "[CLS]", "<|startoftext|>")
        self.eos_id = first("</s>", "[SEP]", "<|endoftext|>")
        if self.pad_id is None:
            self.pad_id = 0
        self.vocab_size = tok.get_vocab_size()

    @classmethod
    def from_hf(cls, tok: HFTokenizer, context_length: int) -> Tokenizer:
        return cls(tok.to_str(), context_length)

    @property
    def hf(self) -> HFTokenizer:
        if self._tok is None:
            self._tok = HFTokenizer.from_str(self._json)
            self._tok.no_truncation()
            self._tok.no_padding()
        return self._tok

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_tok"} | {"_tok": None}

    def save(self, path: str | os.PathLike) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_local_path(p) as tmp:
            Path(tmp).write_text(self._json, encoding="utf-8")

    def ids(self, text: str) -> list[int]:
        """Token ids framed with <s>/</s> (where the vocabulary has them), truncated to the context."""
        body = self.hf.encode(text, add_special_tokens=False).ids
        head = [self.bos_id] if self.bos_id is not None else []
        tail = [self.eos_id] if self.eos_id is not None else []
        room = self.context_length - len(head) - len(tail)
        return head + body[:room] + tail

    def encode(self, text: str) -> torch.Tensor:
        out = np.full(self.context_length, self.pad_id, dtype=np.int64)
        ids = self.ids(text)
        out[: len(ids)] = ids
        return torch.from_numpy(out)

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return torch.stack([self.encode(t) for t in texts])

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        specials = {self.pad_id, self.bos_id, self.eos_id}
        return self.hf.decode([i for i in ids if i not in specials], skip_special_tokens=True)

    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (what a round trip returns)."""
        norm = self.hf.normalizer
        return norm.normalize_str(text) if norm is not None else text


def load_or_train(path: str | os.PathLike | None, context_length: int, texts: Iterable[str] | None = None,
                  vocab_size: int = 2000, save_to: str | os.PathLike | None = None) -> Tokenizer:
    """Load path when given; else train on texts (and save it where asked)."""
    if path:
        return Tokenizer(path, context_length)
    if texts is None:
        raise ValueError("no tokenizer path and no texts to train one on")
    tok = Tokenizer.from_hf(train_tokenizer(texts, vocab_size=vocab_size), context_length)
    if save_to:
        tok.save(save_to)
    return tok


def shard_texts(spec, limit: int = 200_000) -> list[str]:
    """Every matched text of image shards (IMAGES schema), up to `limit`: a trained tokenizer's corpus."""
    from training.data import parquet_file  # local import: data.py imports the dataset machinery

    out: list[str] = []
    for p in storage.expand(spec, suffix=".parquet"):
        for texts in parquet_file(p).read(columns=["texts"]).column("texts").to_pylist():
            out.extend(t["text"] for t in (texts or []))
            if len(out) >= limit:
                return out
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train a multilingual BPE tokenizer (default: on the sample captions).")
    ap.add_argument("--output", default="build/tokenizer.json")
    ap.add_argument("--texts", help="a text file, one caption per line (default: the built-in sample captions)")
    ap.add_argument("--curated", help="a curated/ directory (Parquet with a text column) to train on")
    ap.add_argument("--shards", default="build/sample-shards", help="sample shard root, generated when absent")
    ap.add_argument("--vocab-size", type=int, default=2000)
    a = ap.parse_args(argv)
    if a.texts:
        with open(a.texts, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    elif a.curated:
        from training.data import parquet_file

        texts = [t for p in storage.expand(a.curated, suffix=".parquet")
                 for t in parquet_file(p).read(columns=["text"]).column("text").to_pylist() if t]
    else:
        from training import sample_shards

        sample_shards.generate(a.shards)
        texts = sample_shards.sample_texts(a.shards)
    tok = train_tokenizer(texts, vocab_size=a.vocab_size)
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    tok.save(a.output)
    print(json.dumps({"output": a.output, "texts": len(texts), "vocab_size": tok.get_vocab_size()}))


if __name__ == "__main__":
    main()
