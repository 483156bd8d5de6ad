"""A reference genome in memory: chromosome name -> upper-cased bases."""

from __future__ import annotations

import os
from collections.abc import Collection

from ._fasta import FastaError, iter_fasta
from ._text_files import BinaryStream


def read_reference(
    source: str | os.PathLike | BinaryStream, names: Collection[str] | None = None
) -> dict[str, str]:
    """The sequences of a reference FASTA (plain or gzipped), by name, upper-cased so that
    soft-masked (lowercase) bases read as bases.

    `names`: keep only these sequences (the others are read past, not stored), e.g. the
    chromosomes a VCF names. Two records of one name raise `FastaError` (a coordinate on
    that name would be a guess).

    ```python
    genome = read_reference("genome.fa.gz", names={"chr1"})
    print(len(genome["chr1"]))
    ```
    """
    wanted = None if names is None else set(names)
    found: dict[str, str] = {}
    lines: dict[str, int] = {}
    for record in iter_fasta(source):
        if record.name in lines:
            raise FastaError(
                f"{source}: sequence name {record.name!r} appears twice (lines "
                f"{lines[record.name]} and {record.line}); coordinates name their sequence"
            )
        lines[record.name] = record.line
        if wanted is None or record.name in wanted:
            found[record.name] = record.sequence.upper()
    return found
