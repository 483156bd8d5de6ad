"""`codonnt-eqx score`: zero-shot variant scores (of a variant table, or of a VCF against a
reference genome) or pseudo-log-likelihoods, as a TSV."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from ..inference import VARIANT_METHODS, Scorer, VariantScore
from ..io import (
    VcfVariant,
    check_output_not_input,
    read_genes,
    read_reference,
    read_variants,
    read_vcf_variants,
    variant_contexts,
    write_likelihoods,
    write_variant_scores,
    write_vcf_scores,
)
from ._options import (
    add_devices_option,
    add_model_source,
    add_run_options,
    int_in,
    load_model,
    run_options,
)
from ._progress import progress, records, unique_records


def add_score_parser(commands) -> None:
    """The `score` command."""

    p = commands.add_parser(
        "score",
        help="zero-shot variant scores (--variants, or --vcf with --reference) or "
        "pseudo-log-likelihoods, as a TSV",
        description="With --variants: the log-likelihood ratio alt vs ref of each variant "
        "with the tokens it changes masked. With --vcf and --reference: the same for a VCF's "
        "variants (one per ALT) in chromosome coordinates. A variant inside a --genes gene is "
        "scored in the gene's sequence on the gene's strand (a minus-strand gene reverse-"
        "complemented, alleles too), with its consequence; any other variant, and every "
        "variant without --genes, on the plus strand in a window of the chromosome around "
        "it, without a consequence. Without either: each sequence's pseudo-log-likelihood.",
    )
    # The FASTA is optional here (with --vcf the sequences come from --reference), so this is
    # not _options.add_fasta_input's required positional; --strict and k as there.
    p.add_argument(
        "fasta",
        nargs="?",
        help="FASTA file, plain or gzipped; - reads standard input (not with --vcf)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="reject lowercase and IUPAC ambiguity codes instead of mapping them",
    )
    p.set_defaults(k=3)
    p.add_argument("-o", "--output", required=True, help="TSV to write (atomically)")
    p.add_argument(
        "--variants", help="TSV of sequence_name, position (1-based), ref, alt (- for none)"
    )
    vcf = p.add_argument_group("variants of a genome (--vcf)")
    vcf.add_argument(
        "--vcf",
        help="VCF (.vcf, .vcf.gz, .bcf) of variants on --reference; multi-allelic records give "
        "a row per ALT; symbolic ALTs (<DEL>, *, .) are written as not scored (needs the vcf "
        "extra: pysam)",
    )
    vcf.add_argument(
        "--reference", help="reference genome FASTA (plain or gzipped) the VCF's CHROMs name"
    )
    vcf.add_argument(
        "--genes",
        help="BED6 (strand in column 6) or GFF3 (its CDS features) of coding genes: a variant "
        "inside one is scored on the gene's strand and frame, with its consequence; elsewhere "
        "(and without --genes) on the plus strand in a genomic window, no consequence",
    )
    p.add_argument(
        "--coding",
        default="auto",
        choices=["auto", "yes", "no"],
        help="are the sequences (with --vcf: the --genes genes) in-frame CDSs (consequence "
        "column)? auto: start..stop, length 3n",
    )
    p.add_argument(
        "--method",
        choices=VARIANT_METHODS,
        default="masked_marginal",
        help="variants: masked_marginal (the changed tokens masked; the default, most "
        "faithful) or wildtype_marginal (nothing masked: one pass per window scores every "
        "substitution in it; indels are scored in two contexts either way)",
    )
    p.add_argument(
        "--one-pass",
        action="store_true",
        help="without --variants: the one-pass unmasked approximation, not the masked PLL",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="write unscorable variants (e.g. ref mismatches) with an error instead of stopping",
    )
    add_scorer_options(p)
    p.set_defaults(run=_score_command)


def add_scorer_options(p: argparse.ArgumentParser) -> None:
    """The model and how it runs, for the commands that score (`make_scorer`)."""
    p.add_argument(
        "--batch-tokens", type=int_in(1), default=8192, help="padded tokens per batch and device"
    )
    p.add_argument("--bucket", type=int_in(1), default=128)
    p.add_argument("--window", type=int_in(2), help="tokens per window (default: 1000)")
    add_run_options(p)
    add_devices_option(p)
    add_model_source(p, default_help="(default: the shipped codon-nt-mini)")


def _score_command(args: argparse.Namespace) -> None:
    """`codonnt-eqx score FASTA [--variants TSV] -o OUT.tsv`, or `codonnt-eqx score --vcf
    VCF --reference FASTA [--genes BED|GFF3] -o OUT.tsv`."""

    if args.vcf or args.reference or args.genes:
        return _score_vcf(args)
    if args.fasta is None:
        raise ValueError("score needs a FASTA file (or --vcf with --reference)")
    check_output_not_input(args.output, [args.fasta, args.variants])
    if args.method != "masked_marginal" and not args.variants:
        raise ValueError(f"--method {args.method} scores variants: give --variants (or --vcf)")
    if args.one_pass and args.variants:
        raise ValueError(
            "--one-pass is for pseudo-log-likelihoods, not variants (see --method "
            "wildtype_marginal for one unmasked pass): drop one of them"
        )
    variants = read_variants(args.variants) if args.variants else None
    scorer = make_scorer(args)
    start = time.perf_counter()
    if variants is None:
        rows, skipped = [], []
        bar = progress("seq")
        for record in records(args):
            method = (
                scorer.one_pass_log_likelihood if args.one_pass else scorer.pseudo_log_likelihood
            )
            try:
                rows.append((record.name, len(record.sequence), method(record.sequence)))
            except ValueError as e:  # a record the tokenizer rejects
                if not args.skip_invalid:
                    raise ValueError(f"record {record.name!r}: {e}") from e
                skipped.append(f"{record.name}: {e}")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        write_likelihoods(args.output, rows)
        print(f"wrote {args.output}: {len(rows)} sequences", file=sys.stderr)
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
        return
    scores = scorer.score_variants(
        unique_records(args), variants, coding=coding_choice(args), method=args.method
    )
    failed = [s for s in scores if s.error is not None]
    if failed and not args.skip_invalid:
        _refuse(
            [f"{s.variant.sequence_name}:{s.variant.position} {s.error}" for s in failed],
            len(scores),
        )
    write_variant_scores(args.output, scores)
    wall = time.perf_counter() - start
    scored = len(scores) - len(failed)
    print(
        f"wrote {args.output}: {scored} variants scored, {len(failed)} not, in {wall:.1f} s "
        f"({scored / max(wall - scorer.runner.compile_seconds, 1e-9):,.1f} variants/s without "
        f"compilation; compile {scorer.runner.compile_seconds:.1f} s)",
        file=sys.stderr,
    )
    for s in failed:
        print(
            f"not scored: {s.variant.sequence_name}:{s.variant.position} {s.error}", file=sys.stderr
        )


def make_scorer(args: argparse.Namespace) -> Scorer:
    model, tok, description = load_model(args)
    print(f"Model: {description}.", file=sys.stderr)
    return Scorer(
        model,
        tok,
        batch_tokens=args.batch_tokens,
        bucket=args.bucket,
        window=args.window,
        **run_options(args),
        devices=args.devices,
    )


def _score_vcf(args: argparse.Namespace) -> None:
    """`score --vcf VCF --reference FASTA [--genes BED|GFF3] -o OUT.tsv`: every ALT of the
    VCF scored in its gene (on the gene's strand) or in a plus-strand genomic window."""

    if not (args.vcf and args.reference):
        raise ValueError("--vcf and --reference go together (--genes needs both)")
    if args.fasta is not None or args.variants:
        raise ValueError("with --vcf the sequences come from --reference: drop FASTA / --variants")
    for flag, given, why in (
        ("--strict", args.strict, "the reference is read as it is (soft-masked bases as bases)"),
        ("--one-pass", args.one_pass, "it is for pseudo-log-likelihoods, not variants"),
    ):
        if given:
            raise ValueError(f"{flag} does not apply to --vcf ({why}): drop it")
    check_output_not_input(args.output, [args.vcf, args.reference, args.genes])
    genes = read_genes(args.genes) if args.genes else []
    # Read twice, cheaply (htslib): first for the chromosomes to keep of the reference, then
    # checked against them; holding only those matters for a large genome.
    names = {v.chrom for v in read_vcf_variants(args.vcf)}
    reference = read_reference(args.reference, names=names)
    variants = read_vcf_variants(args.vcf, reference)
    bad = [v for v in variants if v.error is not None]
    if bad and not args.skip_invalid:
        _refuse([f"{v.where}: {v.error}" for v in bad], len(variants), f"{args.vcf}: ")
    scorer = make_scorer(args)
    tok = scorer.tokenizer
    k = int(np.max(tok.token_nucleotides))  # the k of a k-mer tokenizer
    contexts, sequences = variant_contexts(
        variants,
        reference,
        genes=genes,
        flank=tok.nucleotides_for_tokens(scorer.window),  # a full window either side
        period=k,
    )
    start = time.perf_counter()
    scores: list[VariantScore | None] = [None] * len(variants)
    for in_gene in (True, False):
        chosen = [(i, c) for i, c in enumerate(contexts) if c and bool(c.gene) == in_gene]
        found = scorer.score_variants(
            sequences,
            [c.variant for _, c in chosen],
            coding=coding_choice(args) if in_gene else False,
            method=args.method,
        )
        for (i, _), s in zip(chosen, found, strict=True):
            scores[i] = s
    shifting = _shifting_indels(variants, scores, k)
    for i, reason in shifting.items():
        variants[i], scores[i] = dataclasses.replace(variants[i], skip_reason=reason), None
    failed = [
        f"{v.where}: {s.error}"
        for v, s in zip(variants, scores, strict=True)
        if s is not None and s.error is not None
    ]
    if failed and not args.skip_invalid:
        _refuse(failed, len(variants), f"{args.vcf}: ")
    write_vcf_scores(args.output, zip(variants, contexts, scores, strict=True))
    wall = time.perf_counter() - start
    symbolic = sum(v.skip_reason is not None and v.error is None for v in variants) - len(shifting)
    scored = sum(s is not None and s.error is None for s in scores)
    print(
        f"wrote {args.output}: {scored} of {len(variants)} variants scored "
        f"({sum(bool(c and c.gene) for c in contexts)} in genes), {symbolic} symbolic or "
        f"missing ALTs not scored, {len(shifting)} indels of length not a multiple of {k} "
        f"not scored (they shift every later token), {len(bad) + len(failed)} invalid, in "
        f"{wall:.1f} s (compile {scorer.runner.compile_seconds:.1f} s)",
        file=sys.stderr,
    )
    for line in [f"{v.where}: {v.error}" for v in bad] + failed:
        print(f"not scored: {line}", file=sys.stderr)


def _shifting_indels(
    variants: list[VcfVariant], scores: list[VariantScore | None], k: int
) -> dict[int, str]:
    """The variants (by index) that could not be scored because they are indels of a length
    that is not a multiple of k: every token after them changes (in a genomic window, or far
    from a gene's end, more than a variant may change), which is what such an indel is, not
    a fault in the input. The reason to write for each."""
    out = {}
    for i, (v, s) in enumerate(zip(variants, scores, strict=True)):
        shift = abs(len(v.alt) - len(v.ref))
        # "changes N tokens, more than M": the scorer's refusal of too wide a change.
        if s is not None and s.error and s.error.startswith("changes ") and shift % k:
            out[i] = (
                f"an indel of length {shift}, not a multiple of {k}, shifts every later "
                "token: not scored"
            )
    return out


def coding_choice(args: argparse.Namespace) -> bool | None:
    """--coding: are the sequences in-frame CDSs (None: decide per sequence)?"""
    return {"auto": None, "yes": True, "no": False}[args.coding]


def _refuse(problems: list[str], total: int, prefix: str = "") -> None:
    """Stop the run: `problems` (of `total` variants) cannot be scored."""
    shown = "; ".join(problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    raise ValueError(
        f"{prefix}{len(problems)} of {total} variants cannot be scored: {shown}{more}; "
        "--skip-invalid writes them with the reason in the error column"
    )
