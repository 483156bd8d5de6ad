"""Masked-language-model pretraining: masking, schedule, data, sharding, the train step,
checkpoints and the loop, one idea per file."""

from ._checkpoint import TrainingCheckpointError as TrainingCheckpointError
from ._checkpoint import TrainingCheckpoints as TrainingCheckpoints
from ._config import PretrainConfig as PretrainConfig
from ._data import CorpusError as CorpusError
from ._data import GenomeCorpus as GenomeCorpus
from ._errors import TrainingError as TrainingError
from ._loop import RUN_FILES as RUN_FILES
from ._loop import PretrainResult as PretrainResult
from ._loop import pretrain as pretrain
from ._loss import LossMetrics as LossMetrics
from ._loss import masked_lm_loss as masked_lm_loss
from ._loss import masked_lm_metrics as masked_lm_metrics
from ._loss import nucleotides_per_token as nucleotides_per_token
from ._loss import summarise as summarise
from ._masking import MaskedTokens as MaskedTokens
from ._masking import mask_tokens as mask_tokens
from ._masking import maskable_tokens as maskable_tokens
from ._plot import plot_metrics as plot_metrics
from ._plot import read_metrics as read_metrics
from ._run_log import MetricsLog as MetricsLog
from ._run_log import progress_bar as progress_bar
from ._schedule import codon_nt_optimizer as codon_nt_optimizer
from ._schedule import warmup_sqrt_decay as warmup_sqrt_decay
from ._sharding import batch_sharding as batch_sharding
from ._sharding import make_mesh as make_mesh
from ._sharding import put_batch as put_batch
from ._sharding import put_state as put_state
from ._sharding import state_shardings as state_shardings
from ._step import MaskedLM as MaskedLM
from ._step import StepMetrics as StepMetrics
from ._step import make_train_step as make_train_step
