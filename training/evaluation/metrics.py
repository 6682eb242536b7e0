"""Ranks, recall@k and accuracy from normalised embeddings.

Retrieval ties count against the model: a correct candidate's rank is the number of wrong
candidates that score at least as high, so a collapsed model (every embedding equal) scores 0,
not the perfect recall that counting only strictly higher scores would give it, and results do
not depend on the order candidates are listed in. Classification (zero-shot, multiple choice)
takes the first highest-scoring class, as Babel-ImageNet's reference code (torch argmax) does,
so its numbers stay comparable with published ones; a collapsed model then scores about chance.

Retrieval with several captions per image (XM3600 has about two per locale): image->text is a
hit at k when any of the image's captions is among the top k texts, i.e. when fewer than k wrong
texts score at least as high as its best caption; text->image is a hit at k when fewer than k
other images score at least as high as the text's own image.
"""

from __future__ import annotations

import torch

KS = (1, 5, 10)
CHUNK = 2048  # image rows per similarity block: bounds memory at CHUNK x texts floats


def retrieval_ranks(img: torch.Tensor, txt: torch.Tensor, txt_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(i2t rank per image, t2i rank per text); rank 0 = first. txt_image[j] = the image of text j.

    Every image must have at least one text. Similarities are computed in blocks of image rows,
    the same blocks in both passes, so a pair's score is one number wherever it is compared.
    """
    n, m = img.shape[0], txt.shape[0]
    txt_image = torch.as_tensor(txt_image, dtype=torch.long)
    if txt_image.shape != (m,):
        raise ValueError(f"txt_image has shape {tuple(txt_image.shape)}, expected ({m},)")
    if m and (txt_image.min() < 0 or txt_image.max() >= n):
        raise ValueError("txt_image names an image that does not exist")
    has_text = torch.zeros(n, dtype=torch.bool)
    has_text[txt_image] = True
    if not bool(has_text.all()):
        raise ValueError(f"{int((~has_text).sum())} image(s) have no text: leave them out of the pool")
    img, txt = img.float(), txt.float()
    own = torch.empty(m)  # score of each text with its own image
    best = torch.full((n,), float("-inf"))  # best score of an image's own texts
    for s in range(0, n, CHUNK):
        sims = img[s:s + CHUNK] @ txt.t()
        rows = torch.arange(s, s + sims.shape[0])
        mine = txt_image.unsqueeze(0) == rows.unsqueeze(1)  # [chunk, m]: text j belongs to image row
        sel = (txt_image >= s) & (txt_image < s + sims.shape[0])
        own[sel] = sims[txt_image[sel] - s, sel.nonzero().squeeze(1)]
        best[rows] = sims.masked_fill(~mine, float("-inf")).max(1).values
    i2t = torch.zeros(n, dtype=torch.long)
    t2i = torch.zeros(m, dtype=torch.long)
    for s in range(0, n, CHUNK):
        sims = img[s:s + CHUNK] @ txt.t()
        rows = torch.arange(s, s + sims.shape[0])
        mine = txt_image.unsqueeze(0) == rows.unsqueeze(1)
        i2t[rows] = ((sims >= best[rows].unsqueeze(1)) & ~mine).sum(1)
        t2i += ((sims >= own.unsqueeze(0)) & ~mine).sum(0)
    return i2t, t2i


def recall_at_k(img: torch.Tensor, txt: torch.Tensor, txt_image, ks=KS) -> dict:
    """Recall@k both ways over one pool: {images, texts, i2t_r{k}, t2i_r{k}, chance_i2t_r1, chance_t2i_r1}."""
    i2t, t2i = retrieval_ranks(img, txt, txt_image)
    n, m = img.shape[0], txt.shape[0]
    counts = torch.bincount(torch.as_tensor(txt_image, dtype=torch.long), minlength=n).float()
    out = {"images": n, "texts": m,
           # chance of a random ranking: an image's captions among the first k texts, text->image 1/n
           "chance_i2t_r1": float(counts.double().mean()) / m, "chance_t2i_r1": 1.0 / n}
    for k in ks:
        out[f"i2t_r{k}"] = int((i2t < k).sum()) / n  # exact fractions, not float32 means
        out[f"t2i_r{k}"] = int((t2i < k).sum()) / m
    return out


def top1_correct(scores: torch.Tensor, labels) -> torch.Tensor:
    """[N] bool: the first highest-scoring column of each row is the labelled one.

    Rows may hold -inf in columns that are not candidates (CVQA rows with fewer options).
    """
    return scores.argmax(1) == torch.as_tensor(labels, dtype=torch.long)


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(sum(values) / len(values)) if values else None
