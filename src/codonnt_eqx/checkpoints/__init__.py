"""Loading and saving checkpoints: the Hugging Face layout, InstaDeep's JAX layout, our own;
and the models shipped with the package."""

from ._errors import CheckpointError as CheckpointError
from ._pretrained import from_pretrained as from_pretrained
from ._pretrained import save_pretrained as save_pretrained
from ._shipped import DEFAULT_MODEL as DEFAULT_MODEL
from ._shipped import SHIPPED_MODELS as SHIPPED_MODELS
from ._shipped import names_shipped_model as names_shipped_model
from ._shipped import shipped_model_path as shipped_model_path
from .safe_pickle import UnsafePickleError as UnsafePickleError
