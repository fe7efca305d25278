"""DashFusion's retrieval table (nearest same-label and other-label training rows by cosine
similarity) and the pairs drawn from it; the contrastive loss over those pairs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Order of the four utterance embeddings in every (…, 4, D) tensor below.
TEXT, VISION, AUDIO, FUSED = 0, 1, 2, 3
# Categories of a retrieval table: similar + same label, similar + other label, dissimilar + other.
POSITIVE, HARD_NEGATIVE, EASY_NEGATIVE = 0, 1, 2

@dataclass
class RetrievalTable:
    """Per training row, ``candidates`` rows per category (positive, hard, easy negative)."""

    index: torch.Tensor  # (N, 3, K) long: rows of the train split
    valid: torch.Tensor  # (N, 3, K) bool: False where the category had fewer than K rows


def round_labels(
    labels: torch.Tensor, task: str, exact: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grouping label, known mask): the rounded score for regression (``exact``: the score
    itself, to 1e-3, as the authors group CH-SIMS), the class otherwise."""
    if task == "regression":
        known = ~torch.isnan(labels)
        score = torch.nan_to_num(labels.double())
        return torch.round(score * 1000 if exact else score).long(), known
    labels = labels.long()
    return labels, labels >= 0


def build_retrieval_table(
    features: torch.Tensor,
    labels: torch.Tensor,
    known: torch.Tensor | None = None,
    *,
    candidates: int = 10,
    chunk: int = 1024,
) -> RetrievalTable:
    """Nearest same-label rows, nearest and farthest other-label rows, by cosine similarity.

    ``features`` (N, D), ``labels`` (N,) integer groups, ``known`` (N,) rows with a label
    (others are never candidates and get none). Chunked (C, N) matmuls + top-k: memory is
    O(chunk × N), no Python loop over pairs.
    """
    n = features.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels shape {tuple(labels.shape)} != ({n},)")
    known = torch.ones(n, dtype=torch.bool) if known is None else known.bool()
    x = F.normalize(features.float(), dim=1, eps=1e-6)
    labels, known = labels.to(x.device), known.to(x.device)
    k = min(candidates, max(n - 1, 1))
    index = torch.zeros(n, 3, candidates, dtype=torch.long, device=x.device)
    valid = torch.zeros(n, 3, candidates, dtype=torch.bool, device=x.device)
    neg_inf = torch.finfo(x.dtype).min
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rows = torch.arange(start, stop, device=x.device)
        sim = x[start:stop] @ x.T  # (C, N)
        usable = known[rows, None] & known[None, :]  # (C, N)
        usable[rows - start, rows] = False  # a row is never its own candidate
        same = labels[rows, None] == labels[None, :]
        for cat, allowed, score in (
            (POSITIVE, usable & same, sim),
            (HARD_NEGATIVE, usable & ~same, sim),
            (EASY_NEGATIVE, usable & ~same, -sim),
        ):
            top, idx = score.masked_fill(~allowed, neg_inf).topk(k, dim=1)  # (C, k)
            index[start:stop, cat, :k] = idx
            valid[start:stop, cat, :k] = top > neg_inf
    return RetrievalTable(index=index.cpu(), valid=valid.cpu())


def sample_pairs(
    table: RetrievalTable, rows: torch.Tensor, counts: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``counts`` = (positives, hard, easy negatives) per row among its candidates.

    Returns (B, sum(counts)) train rows and a validity mask, positives first; draws are
    without replacement, uniform over the valid candidates (the reference's random.sample).
    """
    idx, ok = table.index[rows], table.valid[rows]  # (B, 3, K)
    keys = torch.rand(idx.shape).masked_fill(~ok, 2.0)  # invalid candidates sort last
    order = keys.argsort(dim=-1)
    picked, picked_ok = [], []
    for cat, count in enumerate(counts):
        take = order[:, cat, :count]  # (B, count)
        picked.append(idx[:, cat].gather(1, take))
        picked_ok.append(ok[:, cat].gather(1, take))
    return torch.cat(picked, dim=1), torch.cat(picked_ok, dim=1)


def reference_pair_count(n_pos: int, n_neg: int) -> int:
    """Positive pairs per anchor in the authors' loss (see contrastive_loss)."""
    return 2 * (1 + n_pos + n_neg) + 4 * n_pos


def contrastive_loss(
    anchors: torch.Tensor,
    pairs: torch.Tensor,
    valid: torch.Tensor,
    *,
    n_pos: int,
    temperature: float,
) -> torch.Tensor:
    """NT-Xent (cosine / temperature) of semantic alignment + SCL, batched.

    ``anchors`` (B, 4, D) text, vision, audio, fused; ``pairs`` (B, R, 4, D) the retrieved
    samples' embeddings, the first ``n_pos`` positives, the rest negatives; ``valid`` (B, R).
    Positive pairs per anchor: its text–vision and text–audio (negatives: its text with the
    negatives' texts) and, within each type, the anchor with each positive (negatives: the
    anchor with the negatives of that type). Each pair costs
    ``-log(e^{s+} / (e^{s+} + Σ e^{s-}))``. The authors' loss averages over 22 pairs per
    anchor of which 12 (the retrieved samples' own text–vision/audio pairs) have no negative
    and are identically zero; we divide by the same count so the weight 0.2 means the same.
    """
    b, r = valid.shape
    n_neg = r - n_pos
    a = F.normalize(anchors, dim=-1)
    p = F.normalize(pairs, dim=-1)
    sim = torch.einsum("bkd,brkd->bkr", a, p) / temperature  # (B, 4, R)
    neg = sim[..., n_pos:].masked_fill(~valid[:, None, n_pos:], float("-inf"))  # (B, 4, N)
    pos = sim[..., :n_pos]  # (B, 4, P)
    # SCL: each (anchor, positive) pair against the anchor's negatives of the same type.
    scl_logits = torch.cat([pos.unsqueeze(-1), neg.unsqueeze(2).expand(-1, -1, n_pos, -1)], -1)
    scl = (scl_logits.logsumexp(-1) - pos) * valid[:, None, :n_pos]  # (B, 4, P)
    # Semantic alignment: text–vision, text–audio of the anchor, against text negatives.
    align = torch.einsum("bd,bkd->bk", a[:, TEXT], a[:, [VISION, AUDIO]]) / temperature  # (B, 2)
    align_logits = torch.cat([align.unsqueeze(-1), neg[:, TEXT, None].expand(-1, 2, -1)], -1)
    sem = align_logits.logsumexp(-1) - align  # (B, 2)
    per_anchor = (scl.sum((1, 2)) + sem.sum(1)) / reference_pair_count(n_pos, n_neg)
    return per_anchor.mean()


# --------------------------------------------------------------------------- model

