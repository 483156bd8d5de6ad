"""The model: its configuration and the one size table, run options, layers, the transformer."""

from ._config import ModelConfig as ModelConfig
from ._layers import Block as Block
from ._layers import FeedForward as FeedForward
from ._layers import LayerNorm as LayerNorm
from ._layers import Linear as Linear
from ._layers import LMHead as LMHead
from ._layers import RotaryEmbedding as RotaryEmbedding
from ._layers import SelfAttention as SelfAttention
from ._matmul import linear_product as linear_product
from ._options import DTYPES as DTYPES
from ._options import IMPLEMENTATIONS as IMPLEMENTATIONS
from ._options import RunOptions as RunOptions
from ._options import dtype_name as dtype_name
from ._options import legacy_options as legacy_options
from ._options import options_of as options_of
from ._options import with_legacy_options as with_legacy_options
from ._options import with_options as with_options
from ._sizes import ALIASES as ALIASES
from ._sizes import PRESETS as PRESETS
from ._sizes import SIZES as SIZES
from ._sizes import model_config_for as model_config_for
from ._sizes import model_sizes as model_sizes
from ._sizes import preset as preset
from ._transformer import ModelOutput as ModelOutput
from ._transformer import NucleotideTransformer as NucleotideTransformer
from ._transformer import check_token_ids as check_token_ids
