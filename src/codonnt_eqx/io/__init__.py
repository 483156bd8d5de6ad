"""Files: FASTA in, variant tables in and scores out, embedding files out, atomic writes."""

from ._atomic_file import atomic_output as atomic_output
from ._embed_files import output_format as output_format
from ._embed_files import write_embeddings as write_embeddings
from ._fasta import BinaryStream as BinaryStream
from ._fasta import FastaError as FastaError
from ._fasta import FastaRecord as FastaRecord
from ._fasta import iter_fasta as iter_fasta
from ._fasta import read_fasta as read_fasta
from ._output_policy import OutputError as OutputError
from ._output_policy import check_folder_not_input as check_folder_not_input
from ._output_policy import check_output_not_input as check_output_not_input
from ._output_policy import claim_run_folder as claim_run_folder
from ._variant_files import VariantFileError as VariantFileError
from ._variant_files import read_variants as read_variants
from ._variant_files import write_likelihoods as write_likelihoods
from ._variant_files import write_variant_scores as write_variant_scores
