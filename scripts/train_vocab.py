"""Trains the shipped SentencePiece vocabulary on the default corpus's train split.

    python -m scripts.train_vocab [--vocab_size 8000] [--output glm_jax/data/assets/default_spm.model]

Ids: pad 0, eos 1, unk 2, then GLM's command tokens in `command_tokens.PIECES` order. Byte fallback
is on, so any text encodes without unknown tokens.
"""

import argparse
import io
import pathlib

import sentencepiece as spm

from glm_jax.data import command_tokens, corpus

_DEFAULT_OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "glm_jax/data/assets/default_spm.model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--output", type=pathlib.Path, default=_DEFAULT_OUTPUT)
    args = parser.parse_args()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus.documents("train")),
        model_writer=model,
        vocab_size=args.vocab_size,
        model_type="unigram",
        character_coverage=0.9995,
        byte_fallback=True,
        split_digits=True,
        max_sentence_length=1 << 20,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        user_defined_symbols=list(command_tokens.PIECES.values()),
        num_threads=2,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(model.getvalue())
    print(f"wrote {args.output} ({len(model.getvalue())} bytes, {args.vocab_size} pieces)")


if __name__ == "__main__":
    main()
