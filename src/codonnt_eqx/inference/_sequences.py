"""What the inference entry points take as a sequence: a string, or any record with a `name`
and a `sequence` (a `FastaRecord`, a Biopython-like record wrapped, a user's dataclass)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class NamedSequence(Protocol):
    """A named DNA sequence; `FastaRecord` is one."""

    @property
    def name(self) -> str: ...

    @property
    def sequence(self) -> str: ...


def name_and_sequence(item: str | NamedSequence, index: int) -> tuple[str, str]:
    """(name, sequence) of an input: a record's own name, `seq{index}` for a plain string."""
    if isinstance(item, str):
        return f"seq{index}", item
    if isinstance(item, NamedSequence):
        return item.name, item.sequence
    raise TypeError(
        f"a sequence must be a string or a record with .name and .sequence, got {item!r}"
    )
