"""Codon-NT (Nucleotide Transformer v2, 3-mer tokens) in JAX + Equinox."""

from ._fasta import FastaError as FastaError
from ._fasta import FastaRecord as FastaRecord
from ._fasta import read_fasta as read_fasta
from ._tokenizers import KmerTokenizer as KmerTokenizer
from ._tokenizers import SequenceError as SequenceError
from ._tokenizers import SequenceTooLongError as SequenceTooLongError
from ._tokenizers import Tokenizer as Tokenizer

__version__ = "0.1.0"
