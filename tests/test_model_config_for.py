import equinox as eqx
import jax
import jax.random as jr
import pytest

from codonnt_eqx import (
    SIZES,
    CodonTokenizer,
    KmerTokenizer,
    ModelConfig,
    NucleotideTokenizer,
    NucleotideTransformer,
    OverlappingKmerTokenizer,
    model_config_for,
    preset,
)

TOKENIZERS = [NucleotideTokenizer(), KmerTokenizer(3), KmerTokenizer(6), CodonTokenizer(),
              OverlappingKmerTokenizer(4)]  # fmt: skip


def parameters(config: ModelConfig) -> int:
    model = eqx.filter_eval_shape(NucleotideTransformer, config, key=jr.key(0))
    shapes = [x for x in jax.tree.leaves(model) if isinstance(x, jax.ShapeDtypeStruct)]
    return sum(x.size for x in shapes)


@pytest.mark.parametrize("tokenizer", TOKENIZERS, ids=repr)
def test_vocabulary_and_special_ids_come_from_the_tokenizer(tokenizer):
    config = model_config_for(tokenizer, "tiny")
    assert config.vocab_size == tokenizer.vocab_size
    assert (config.pad_token_id, config.mask_token_id) == (tokenizer.pad_id, tokenizer.mask_id)
    assert (config.num_layers, config.embed_dim) == (2, 128)


def test_the_body_is_the_same_for_every_tokenizer():
    """Parameters minus the per-token rows (embedding, LM-head weight and bias) are equal."""
    bodies = set()
    for tok in TOKENIZERS:
        config = model_config_for(tok, "tiny")
        bodies.add(parameters(config) - tok.vocab_size * (2 * config.embed_dim + 1))
    assert len(bodies) == 1


def test_codon_nt_size_with_its_tokenizer_is_codon_nt():
    assert model_config_for(KmerTokenizer(3), "codon_nt") == preset("codon_nt")
    assert model_config_for(KmerTokenizer(3), preset("codon_nt")) == preset("codon_nt")


def test_unknown_sizes_are_refused():
    with pytest.raises(ValueError, match="unknown size"):
        model_config_for(KmerTokenizer(3), "huge")
    assert set(SIZES) == {"tiny", "mini", "codon_nt"}
