"""Running a trained model on sequences: one windowing-and-batching core, embedding and scoring
on top of it."""

from ._embedder import POOLINGS as POOLINGS
from ._embedder import Embedder as Embedder
from ._embedder import InvalidRecordError as InvalidRecordError
from ._embedder import SequenceEmbedding as SequenceEmbedding
from ._embedder import embed as embed
from ._saturation import SCAN_MODES as SCAN_MODES
from ._saturation import SaturationScan as SaturationScan
from ._saturation import saturation_scan as saturation_scan
from ._saturation import scan as scan
from ._scorer import VARIANT_METHODS as VARIANT_METHODS
from ._scorer import Scorer as Scorer
from ._scorer import TokenLogLikelihood as TokenLogLikelihood
from ._scorer import Variant as Variant
from ._scorer import VariantScore as VariantScore
from ._scorer import pseudo_log_likelihood as pseudo_log_likelihood
from ._scorer import score_variants as score_variants
from ._sequences import NamedSequence as NamedSequence
