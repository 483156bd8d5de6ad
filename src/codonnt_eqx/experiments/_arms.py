"""The tokenizations compared by default: single nucleotides, Codon-NT's 3-mers, NT's
6-mers, codons in frame, overlapping 3-mers and BPE."""

from __future__ import annotations

from collections.abc import Sequence

from ..tokenizers import (
    BPETokenizer,
    CodonTokenizer,
    KmerTokenizer,
    NucleotideTokenizer,
    OverlappingKmerTokenizer,
)
from ._tokenizations import Arm

DEFAULT_ARMS = ("k1", "k3", "k6", "codon", "bpe")
ALL_ARMS = (*DEFAULT_ARMS, "overlap3")


def default_arms(
    names: Sequence[str] = DEFAULT_ARMS,
    *,
    bpe_training: Sequence[str] = (),
    bpe_vocab_size: int = 512,
) -> list[Arm]:
    """The arms called `names` (`ALL_ARMS`): `k1`, `k3`, `k6` (non-overlapping k-mers, any
    frame), `codon` (`CodonTokenizer`, windows in frame), `overlap3` (overlapping 3-mers,
    span masking) and `bpe` (its merges learned from the sequences `bpe_training`: pass the
    training parts only, not the held-out ends)."""
    unknown = sorted(set(names) - set(ALL_ARMS))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; choose from {list(ALL_ARMS)}")
    arms = []
    for name in names:
        if name == "k1":
            arms.append(Arm(name, NucleotideTokenizer()))
        elif name in ("k3", "k6"):
            arms.append(Arm(name, KmerTokenizer(int(name[1]))))
        elif name == "codon":
            arms.append(Arm(name, CodonTokenizer(0), alignment=3))
        elif name == "overlap3":
            arms.append(Arm(name, OverlappingKmerTokenizer(3)))
        else:
            if not bpe_training:
                raise ValueError("the bpe arm needs sequences to learn its merges from")
            arms.append(Arm(name, BPETokenizer.train(bpe_training, vocab_size=bpe_vocab_size)))
    return arms
