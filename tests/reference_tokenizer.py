"""A straightforward pure-Python k-mer tokenizer: the test oracle and the benchmark baseline.

Written from the rules alone (split on N, k-mers from each piece's start, remainder as single
bases, N as its own token, <cls> first); it shares no code with the package.
"""

import functools
import itertools


@functools.cache
def reference_vocabulary(k: int, layout: str = "v2") -> tuple[str, ...]:
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    singles = ["A", "T", "C", "G", "N"]
    if layout == "v2":
        return ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", *kmers, *singles)
    return ("<unk>", "<pad>", "<mask>", "<cls>", *kmers, *singles, "<eos>", "<bos>")


@functools.cache
def _id_maps(k: int, layout: str) -> tuple[dict[str, int], dict[str, int]]:
    first_kmer = 6 if layout == "v2" else 4
    first_single = first_kmer + 4**k
    vocab = reference_vocabulary(k, layout)
    kmers = {vocab[i]: i for i in range(first_kmer, first_single)}
    singles = {vocab[i]: i for i in range(first_single, first_single + 5)}
    return kmers, singles


def reference_tokens(seq: str, k: int) -> list[str]:
    tokens = ["<cls>"]
    pieces = seq.split("N")
    for i, piece in enumerate(pieces):
        full = len(piece) // k * k
        tokens += [piece[j : j + k] for j in range(0, full, k)]
        tokens += list(piece[full:])
        if i < len(pieces) - 1:
            tokens.append("N")
    return tokens


def reference_encode(seq: str, k: int, layout: str = "v2") -> list[int]:
    kmers, singles = _id_maps(k, layout)
    cls_id = 3
    out = [cls_id]
    for tok in reference_tokens(seq, k)[1:]:
        out.append(kmers[tok] if len(tok) == k and tok != "N" else singles[tok])
    return out
