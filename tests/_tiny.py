"""Build a tiny BERT model and tokenizer on disk, offline and deterministically."""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "a",
    "an",
    "the",
    "is",
    "was",
    "are",
    "be",
    "not",
    "no",
    "very",
    "good",
    "bad",
    "great",
    "awful",
    "movie",
    "film",
    "book",
    "story",
    "plot",
    "acting",
    "love",
    "hate",
    "like",
    "it",
    "this",
    "that",
    "and",
    "but",
    "or",
    "i",
    "you",
    "we",
    "they",
    "he",
    "she",
    "fun",
    "boring",
    "long",
    "short",
    "happy",
    "sad",
    "man",
    "woman",
    "dog",
    "cat",
    "sat",
    "on",
    "mat",
    "runs",
    "ran",
    "fast",
    "slow",
    "yes",
    "true",
    "false",
    "question",
    "answer",
    "why",
    "what",
]
PIECES = ["##s", "##ed", "##ing", "##ly", "##er", "##est", "##y", "##n", "##t", "##e"]
PUNCT = [".", ",", "!", "?", "'"]
VOCAB = SPECIAL + PUNCT + WORDS + PIECES + [chr(c) for c in range(ord("a"), ord("z") + 1)]


def build_tiny_bert(folder: Path, seed: int = 0, dropout: float | None = None) -> Path:
    """Save a tiny BertModel (hidden 32, 2 layers) and a WordPiece tokenizer into ``folder``.

    ``dropout`` replaces BERT's 0.1 (hidden and attention) when given: 0 makes training
    deterministic across process layouts (data-parallel vs single process)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # dict.fromkeys keeps the first occurrence: single letters may repeat words like "a".
    vocab = list(dict.fromkeys(VOCAB))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))

    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        **(
            {}
            if dropout is None
            else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        ),
    )
    # Seed a private generator state: same seed, identical weights, whatever ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder
