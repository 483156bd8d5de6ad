"""Codon-NT (Nucleotide Transformer v2, 3-mer tokens) in JAX + Equinox."""

from . import kernels as kernels
from . import tokenizers as tokenizers
from .checkpoints import DEFAULT_MODEL as DEFAULT_MODEL
from .checkpoints import SHIPPED_MODELS as SHIPPED_MODELS
from .checkpoints import CheckpointError as CheckpointError
from .checkpoints import UnsafePickleError as UnsafePickleError
from .checkpoints import from_pretrained as from_pretrained
from .checkpoints import save_pretrained as save_pretrained
from .inference import Embedder as Embedder
from .inference import InvalidRecordError as InvalidRecordError
from .inference import Scorer as Scorer
from .inference import SequenceEmbedding as SequenceEmbedding
from .inference import TokenLogLikelihood as TokenLogLikelihood
from .inference import Variant as Variant
from .inference import VariantScore as VariantScore
from .inference import embed as embed
from .inference import pseudo_log_likelihood as pseudo_log_likelihood
from .inference import score_variants as score_variants
from .io import FastaError as FastaError
from .io import FastaRecord as FastaRecord
from .io import iter_fasta as iter_fasta
from .io import read_fasta as read_fasta
from .io import read_variants as read_variants
from .model import PRESETS as PRESETS
from .model import SIZES as SIZES
from .model import ModelConfig as ModelConfig
from .model import ModelOutput as ModelOutput
from .model import NucleotideTransformer as NucleotideTransformer
from .model import RunOptions as RunOptions
from .model import check_token_ids as check_token_ids
from .model import model_config_for as model_config_for
from .model import preset as preset
from .model import with_options as with_options
from .tokenizers import BPETokenizer as BPETokenizer
from .tokenizers import CodonTokenizer as CodonTokenizer
from .tokenizers import KmerTokenizer as KmerTokenizer
from .tokenizers import NucleotideTokenizer as NucleotideTokenizer
from .tokenizers import OverlappingKmerTokenizer as OverlappingKmerTokenizer
from .tokenizers import SequenceError as SequenceError
from .tokenizers import SequenceTooLongError as SequenceTooLongError
from .tokenizers import Tokenizer as Tokenizer
from .tokenizers import load_tokenizer as load_tokenizer
from .tokenizers import reverse_complement as reverse_complement
from .tokenizers import save_tokenizer as save_tokenizer

__version__ = "0.1.0"
