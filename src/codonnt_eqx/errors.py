"""The one error class every reader of a user's file raises (FASTA, variant tables, task files,
tokenizer records, checkpoints, adapters, caches): catch `InputError` to handle any bad file.

It subclasses `ValueError`, so code written against the readers' older `ValueError`s still
catches it.
"""

from __future__ import annotations


class InputError(ValueError):
    """A file (or a record, row or field in one) that cannot be used as asked; the message
    names the file and, where there is one, the line and the field."""
