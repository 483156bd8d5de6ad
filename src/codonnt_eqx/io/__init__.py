"""Files: FASTA, BED, VCF and gene annotations in, variant tables in and scores out, embedding
files out, atomic writes."""

from ._atomic_file import atomic_output as atomic_output
from ._bed import BedError as BedError
from ._bed import BedRegion as BedRegion
from ._bed import read_bed as read_bed
from ._bed import region_sequence as region_sequence
from ._embed_files import output_format as output_format
from ._embed_files import write_embeddings as write_embeddings
from ._fasta import FastaError as FastaError
from ._fasta import FastaRecord as FastaRecord
from ._fasta import iter_fasta as iter_fasta
from ._fasta import read_fasta as read_fasta
from ._genes import Gene as Gene
from ._genes import GeneFileError as GeneFileError
from ._genes import read_genes as read_genes
from ._output_policy import OutputError as OutputError
from ._output_policy import check_folder_not_input as check_folder_not_input
from ._output_policy import check_output_not_input as check_output_not_input
from ._output_policy import claim_run_folder as claim_run_folder
from ._reference import read_reference as read_reference
from ._region_files import write_region_embeddings as write_region_embeddings
from ._text_files import BinaryStream as BinaryStream
from ._variant_contexts import VCF_SCORE_COLUMNS as VCF_SCORE_COLUMNS
from ._variant_contexts import VariantContext as VariantContext
from ._variant_contexts import variant_contexts as variant_contexts
from ._variant_contexts import write_vcf_scores as write_vcf_scores
from ._variant_files import VariantFileError as VariantFileError
from ._variant_files import read_variants as read_variants
from ._variant_files import write_likelihoods as write_likelihoods
from ._variant_files import write_variant_scores as write_variant_scores
from ._vcf import VcfError as VcfError
from ._vcf import VcfVariant as VcfVariant
from ._vcf import read_vcf_variants as read_vcf_variants
