"""Which CLIP tokens the text attention stage attends: every BPE piece of each hand-related word.

AttentionHand's hand-related tagging (Park et al., ECCV 2024, arXiv:2407.18034, supplement C) keeps
a word when its part-of-speech tag is VBG ("holding", "waving") or when it names the hand ("hand",
"fingers", "gesture"). The tags are NLTK's perceptron tagger's when NLTK and its tagger data are
installed; otherwise an offline rule stands in for VBG (below), on lemminflect's English lexicon
(https://github.com/bjascob/LemmInflect, its data inside the wheel) so that only verbs' -ing forms count
("sterling", "sibling" and "darling" are not verbs).

The published code passes NLTK *word* indices on as CLIP *token* indices, so it attends the word
before (the start token shifts everything by one) and loses track after any word that CLIP splits
into several BPE pieces. Here each word is tokenized on its own and every one of its pieces is
chosen, at its position in the tokenized prompt (1 + offset: index 0 is the start token), and the
split is checked against the tokenizer's own tokenization of the whole prompt.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# Words that name the hand, whole words only ("handle", "handsome" and "chandelier" do not)
HAND_WORDS = frozenset({"hand", "hands", "handed", "finger", "fingers", "fingertip", "fingertips", "gesture",
                        "gestures"})
# CLIP's tokenizer splits on Unicode's White_Space; Python's \s (and str.split) also on the separators \x1c-\x1f,
# which CLIP keeps as characters: a prompt holding one failed to align with its tokens (an internal error)
_NOT_CLIP_SPACE = "\x1c-\x1f"
_CLIP_SPACE = re.compile(rf"[^\S{_NOT_CLIP_SPACE}]+")
# CLIP's pre-tokenizer pattern (openai/CLIP simple_tokenizer.py) with Python's re: contractions,
# letter runs, single digits, runs of other non-space characters.
_PIECES = re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|[{_NOT_CLIP_SPACE}_])+", re.IGNORECASE)
_DETERMINERS = {"a", "an", "the", "this", "that", "his", "her", "their", "my", "your", "our", "its"}
# Common words ending in "ing" mostly used as nouns or adjectives (the offline rule's exceptions).
_ING_NOUNS = {
    "thing", "things", "something", "anything", "nothing", "everything", "morning", "evening", "ceiling",
    "ring", "king", "wing", "string", "spring", "sing", "bring", "swing", "sling", "sting", "during", "clothing",
    "wedding", "pudding", "building", "painting", "drawing", "ping", "ding", "icing", "awning", "lightning",
    "offspring", "herring", "pending", "boring", "interesting", "amazing", "stunning", "charming",
}


@dataclass(frozen=True)
class ChosenToken:
    index: int   # position in the encoded prompt (0 is the start token)
    token: str   # the BPE piece
    word: str    # the word it belongs to


def _lexicon_vbg(words: Sequence[str]) -> list[bool]:
    """Offline stand-in for the VBG tag: a word of 5+ letters ending in "ing" that the lexicon knows as
    the -ing form of a verb (its lemma another word: "ring" and "king" are their own) or does not know at
    all ("texting", "high-fiving": newer verbs are missing from it), not a known noun or adjective in
    "ing", and not right after a determiner ("a painting")."""
    try:
        from lemminflect import getAllLemmas
    except ImportError:  # (an environment set up before it joined the backend extra)
        raise ImportError("TAS without NLTK's tagger data needs lemminflect: pip install lemminflect, or set up "
                          "HandForge's backend extra again (python3 scripts/dev.py setup)") from None

    out = []
    for k, word in enumerate(words):
        w = word.lower()
        after_determiner = k > 0 and words[k - 1].lower() in _DETERMINERS
        if len(w) >= 5 and w.endswith("ing"):
            known = getAllLemmas(w)
            verb_form = not known or any(lemma != w for lemma in known.get("VERB", ()))
        else:
            verb_form = False
        out.append(verb_form and w not in _ING_NOUNS and not after_determiner)
    return out


def tag_vbg(words: Sequence[str]) -> tuple[list[bool], str]:
    """Whether each word is tagged VBG, and which tagger said so ("nltk" or "lexicon")."""
    try:
        import nltk

        nltk.data.find("taggers/averaged_perceptron_tagger_eng")
        return [tag == "VBG" for _, tag in nltk.pos_tag(list(words))], "nltk"
    except (ImportError, LookupError):
        return _lexicon_vbg(words), "lexicon"


def is_hand_word(word: str) -> bool:
    return word.lower() in HAND_WORDS


def split_words(prompt: str) -> list[str]:
    """The prompt cut as CLIP's tokenizer cuts it before BPE (composed Unicode, as the tokenizer reads
    it: a decomposed "é" is one letter, not "e" and a combining accent; lower case, whitespace collapsed)."""
    return _PIECES.findall(_CLIP_SPACE.sub(" ", unicodedata.normalize("NFC", prompt)).strip(" ").lower())


def hand_tokens(prompt: str, tokenizer, max_length: int | None = None) -> tuple[list[ChosenToken], str]:
    """The tokens of the hand-related words of ``prompt``, for ``tokenizer`` (a CLIP tokenizer), and
    the tagger used. Tokens past the text encoder's window (``max_length``, default the tokenizer's,
    minus the start and end tokens) are dropped, as the encoder never sees them."""
    # the tokenizer keeps its special tokens ("<|endoftext|>" pasted from another tool) whole: so do we
    special = sorted(set(getattr(tokenizer, "all_special_tokens", ())), key=len, reverse=True)
    segments = re.split("(" + "|".join(map(re.escape, special)) + ")", prompt) if special else [prompt]
    pieces = [piece for k, segment in enumerate(segments)
              for piece in ([segment] if k % 2 else split_words(segment))]
    words = [p for p in pieces if p[0].isalpha()]
    vbg, tagger = tag_vbg(words)
    chosen_words = {i for i, (w, v) in enumerate(zip(words, vbg)) if v or is_hand_word(w)}
    limit = (max_length or tokenizer.model_max_length) - 1
    chosen, position, word_index, pieced = [], 1, 0, []
    for piece in pieces:
        tokens = [piece] if piece in special else tokenizer.tokenize(piece)
        pieced += tokens
        if piece[0].isalpha():
            if word_index in chosen_words:
                chosen += [ChosenToken(position + k, t, piece) for k, t in enumerate(tokens) if position + k < limit]
            word_index += 1
        position += len(tokens)
    whole = tokenizer.tokenize(unicodedata.normalize("NFC", prompt))
    if pieced != whole:
        raise ValueError(f"cannot align the words of {prompt!r} with the tokenizer's tokens ({whole} whole, "
                         f"{pieced} word by word); is this a CLIP tokenizer?")
    return chosen, tagger


def truncated(tokenizer, prompt: str, name: str = "prompt") -> list[str]:
    """The warning for a prompt longer than the text encoder reads (its end is dropped), or none."""
    read = tokenizer.model_max_length - 2  # the start and end tokens take two places
    tokens = tokenizer.tokenize(prompt)
    if len(tokens) <= read:
        return []
    rest = tokenizer.decode(tokenizer.convert_tokens_to_ids(tokens[read:read + 8]))
    # (a character cut between two tokens decodes to U+FFFD; a NUL or other control character went raw into the text)
    rest = "".join(c if c.isprintable() else " " for c in rest.replace("\ufffd", "")).strip()
    return [f"the {name} is {len(tokens)} tokens, the text encoder reads {read}: from '{rest}…' on it is "
            "ignored; shorten it, the important words first"]


__all__ = ["HAND_WORDS", "ChosenToken", "hand_tokens", "is_hand_word", "split_words", "tag_vbg", "truncated"]
