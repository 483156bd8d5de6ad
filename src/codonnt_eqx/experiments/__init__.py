"""Experiments built from the library's parts: the fair comparison of tokenizations."""

from ._arms import ALL_ARMS as ALL_ARMS
from ._arms import DEFAULT_ARMS as DEFAULT_ARMS
from ._arms import default_arms as default_arms
from ._report import plot_results as plot_results
from ._report import results_table as results_table
from ._tokenizations import Arm as Arm
from ._tokenizations import ComparisonConfig as ComparisonConfig
from ._tokenizations import compare_tokenizations as compare_tokenizations
from ._tokenizations import comparison_corpus as comparison_corpus
from ._tokenizations import window_tokens as window_tokens
