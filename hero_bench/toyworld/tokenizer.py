"""Word-level tokenizer for ShapesWorld captions.

ShapesWorld captions use a closed vocabulary (``scenes.VOCAB``), so a BPE tokenizer would only add
noise: one token per word keeps the text encoder tiny and makes every caption word a single,
inspectable embedding.  The tokenizer is a ``tokenizers`` WordLevel model wrapped in transformers'
``PreTrainedTokenizerFast``, saved with ``save_pretrained`` so that the standard loader
(``AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")``) reads it offline, exactly as it
reads Stable Diffusion's CLIP tokenizer.

Behaviour:
- text is lower-cased, punctuation is dropped (the caption vocabulary has none) and the rest is
  split on whitespace (``"A red circle, above."`` -> ``a red circle above``);
- every sequence is wrapped as ``<bos> words... <eos>`` and padded with ``<pad>`` to
  ``model_max_length`` when the caller asks for ``padding="max_length"`` (as the SD-style prompt
  encoder does); longer prompts are truncated when ``truncation=True``;
- **a word outside the vocabulary becomes ``<unk>``** (id 1).  The pretrained text encoder has seen
  ``<unk>`` only rarely, so prompts with unknown words still run but mean little; use
  ``unknown_words(tokenizer, text)`` to check a prompt before relying on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from hero_bench.toyworld import scenes

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
"""Special tokens, in id order: pad=0, unk=1, bos=2, eos=3 (caption words follow from id 4)."""

DEFAULT_MAX_LENGTH = 16
"""Default ``model_max_length``: the longest ShapesWorld caption plus ``<bos>``/``<eos>`` fits."""


def build_vocab(words: Iterable[str]) -> dict[str, int]:
    """Token -> id: the special tokens first, then the (lower-cased, de-duplicated) words in order."""
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        w = word.strip().lower()
        if not w or " " in w:
            raise ValueError(f"vocabulary entry {word!r} is not a single word")
        if w not in vocab:
            vocab[w] = len(vocab)
    return vocab


def build_tokenizer(words: Sequence[str] | None = None, model_max_length: int = DEFAULT_MAX_LENGTH):
    """A ``PreTrainedTokenizerFast`` over ``words`` (default: ``scenes.VOCAB``) plus the special tokens."""
    # deferred: tokenizers, transformers (the toy modules, and so hero-bench --help, import without them)
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    if words is None:
        words = scenes.VOCAB
    vocab = build_vocab(words)
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    # Punctuation becomes a space so "circle." or "red," stay known words instead of turning into <unk>.
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B {EOS}",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
    )
    return fast


def unknown_words(tokenizer, text: str) -> list[str]:
    """The words of ``text`` that the tokenizer maps to ``<unk>`` (empty list: every word is known)."""
    backend = tokenizer.backend_tokenizer
    normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
    words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]
    vocab = tokenizer.get_vocab()
    return [w for w in words if w not in vocab]


def save_tokenizer(tokenizer, folder: str | Path) -> Path:
    """``save_pretrained`` into ``folder`` (the pipeline's ``tokenizer/`` subfolder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def load_tokenizer(folder: str | Path, subfolder: str | None = None):
    """Load a saved tokenizer through the standard ``AutoTokenizer`` path (offline)."""
    # deferred: transformers (0.5 s; imports torch)
    from transformers import AutoTokenizer

    kwargs = {"subfolder": subfolder} if subfolder else {}
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
