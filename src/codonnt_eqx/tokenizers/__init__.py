"""Tokenizers of DNA under one protocol: the k-mer tokenizer of the Nucleotide Transformer,
single nucleotides, reading-frame-aware codons, overlapping k-mers and BPE; one file each."""

from ._bpe import BPETokenizer as BPETokenizer
from ._codon import CodonTokenizer as CodonTokenizer
from ._kmer import KmerTokenizer as KmerTokenizer
from ._nucleotide import NucleotideTokenizer as NucleotideTokenizer
from ._overlapping import OverlappingKmerTokenizer as OverlappingKmerTokenizer
from ._protocol import SequenceError as SequenceError
from ._protocol import SequenceTooLongError as SequenceTooLongError
from ._protocol import Tokenizer as Tokenizer
from ._protocol import prepends_cls as prepends_cls
from ._saving import load_tokenizer as load_tokenizer
from ._saving import save_tokenizer as save_tokenizer
