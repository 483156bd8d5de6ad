"""One token per nucleotide: the finest tokenization, the baseline of every comparison."""

from __future__ import annotations

from typing import Any

from ._kmer import KmerTokenizer


class NucleotideTokenizer(KmerTokenizer):
    """One token per base (`A C G T N`), `<cls>` first: `KmerTokenizer(1)` under its own name,
    with the NT v2 vocabulary layout (6 specials, `A T C G`, then `A T C G N` as single-base
    tokens, as every NT tokenizer has them: 15 tokens, ids 10..14 unused by encoding).

    **Arguments:** `prepend_cls`, `uppercase`, `iupac_to_n` as for `KmerTokenizer`.

    ```python
    tok = NucleotideTokenizer()
    tok.encode("ACGN")  # [3, 6, 8, 9, 14]: <cls> A C G N
    ```
    """

    def __init__(
        self, *, prepend_cls: bool = True, uppercase: bool = False, iupac_to_n: bool = False
    ):
        super().__init__(
            1, layout="v2", prepend_cls=prepend_cls, uppercase=uppercase, iupac_to_n=iupac_to_n
        )

    def __repr__(self) -> str:
        return (
            f"NucleotideTokenizer(prepend_cls={self.prepend_cls}, uppercase={self.uppercase}, "
            f"iupac_to_n={self.iupac_to_n})"
        )

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        del config["k"], config["layout"]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NucleotideTokenizer:
        return cls(**config)
