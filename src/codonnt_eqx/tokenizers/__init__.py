"""Tokenizers of DNA under one protocol: the k-mer tokenizer of the Nucleotide Transformer,
single nucleotides, reading-frame-aware codons, overlapping k-mers and BPE; one file each; and
the genetic code they read DNA with."""

from ._bpe import BPETokenizer as BPETokenizer
from ._codon import CodonTokenizer as CodonTokenizer
from ._genetic_code import CODON_TABLE as CODON_TABLE
from ._genetic_code import STOP_CODONS as STOP_CODONS
from ._genetic_code import reverse_complement as reverse_complement
from ._genetic_code import translate as translate
from ._kmer import MAX_K as MAX_K
from ._kmer import KmerTokenizer as KmerTokenizer
from ._nucleotide import NucleotideTokenizer as NucleotideTokenizer
from ._overlapping import OverlappingKmerTokenizer as OverlappingKmerTokenizer
from ._protocol import SequenceError as SequenceError
from ._protocol import SequenceTooLongError as SequenceTooLongError
from ._protocol import Tokenizer as Tokenizer
from ._protocol import prepends_cls as prepends_cls
from ._registry import register_tokenizer as register_tokenizer
from ._saving import TOKENIZER_FILE as TOKENIZER_FILE
from ._saving import TokenizerRecordError as TokenizerRecordError
from ._saving import load_tokenizer as load_tokenizer
from ._saving import save_tokenizer as save_tokenizer
from ._saving import tokenizer_from_record as tokenizer_from_record
from ._saving import tokenizer_record as tokenizer_record
from ._validation import IUPAC_AMBIGUITY as IUPAC_AMBIGUITY
