"""Codon-NT (Nucleotide Transformer v2, 3-mer tokens) in JAX + Equinox."""

from . import kernels as kernels
from . import tokenizers as tokenizers
from ._checkpoints import CheckpointError as CheckpointError
from ._checkpoints import UnsafePickleError as UnsafePickleError
from ._checkpoints import from_pretrained as from_pretrained
from ._checkpoints import save_pretrained as save_pretrained
from ._config import PRESETS as PRESETS
from ._config import ModelConfig as ModelConfig
from ._config import preset as preset
from ._embed import Embedder as Embedder
from ._embed import InvalidRecordError as InvalidRecordError
from ._embed import SequenceEmbedding as SequenceEmbedding
from ._embed import embed as embed
from ._embed import reverse_complement as reverse_complement
from ._fasta import FastaError as FastaError
from ._fasta import FastaRecord as FastaRecord
from ._fasta import iter_fasta as iter_fasta
from ._fasta import read_fasta as read_fasta
from ._model import ModelOutput as ModelOutput
from ._model import NucleotideTransformer as NucleotideTransformer
from ._model import check_token_ids as check_token_ids
from ._model_config_for import SIZES as SIZES
from ._model_config_for import model_config_for as model_config_for
from ._scores import Scorer as Scorer
from ._scores import TokenLogLikelihood as TokenLogLikelihood
from ._scores import Variant as Variant
from ._scores import VariantScore as VariantScore
from ._scores import pseudo_log_likelihood as pseudo_log_likelihood
from ._scores import score_variants as score_variants
from ._shipped import DEFAULT_MODEL as DEFAULT_MODEL
from ._shipped import SHIPPED_MODELS as SHIPPED_MODELS
from ._variant_files import read_variants as read_variants
from .tokenizers import BPETokenizer as BPETokenizer
from .tokenizers import CodonTokenizer as CodonTokenizer
from .tokenizers import KmerTokenizer as KmerTokenizer
from .tokenizers import NucleotideTokenizer as NucleotideTokenizer
from .tokenizers import OverlappingKmerTokenizer as OverlappingKmerTokenizer
from .tokenizers import SequenceError as SequenceError
from .tokenizers import SequenceTooLongError as SequenceTooLongError
from .tokenizers import Tokenizer as Tokenizer
from .tokenizers import load_tokenizer as load_tokenizer
from .tokenizers import save_tokenizer as save_tokenizer

__version__ = "0.1.0"
