"""Token counting and fitting a prompt to a target's budget."""

import random
import re

import pytest

from phyprompt.language.budget import (EstimatedCounter, Fitted, TokenizerCounter, counter_for, fit_to_budget,
                                        load_tokenizer_counter)
from phyprompt.language.targets import TARGETS, get_target


class WordCounter:
    """One token per whitespace-separated word: makes the expected cuts easy to work out by hand."""

    description = "words"

    def count(self, text: str) -> int:
        return len(text.split())


WORDS = WordCounter()


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from support.tiny_refiner import build_tokenizer

    return build_tokenizer()


# --- fit_to_budget -------------------------------------------------------------------------------

def test_fits_untouched():
    text = "A red ball falls. It bounces."
    assert fit_to_budget(text, WORDS, 10) == Fitted(text, 6, 10, False, "")


def test_exactly_at_the_limit_is_not_shortened():
    text = "A red ball falls from the balcony and bounces twice."
    assert fit_to_budget(text, WORDS, 10) == Fitted(text, 10, 10, False, "")
    counter = EstimatedCounter(special_tokens=2)
    limit = counter.count(text)
    assert fit_to_budget(text, counter, limit) == Fitted(text, limit, limit, False, "")


def test_one_over_the_limit_is_shortened():
    text = "A red ball falls from the balcony and bounces twice."
    fitted = fit_to_budget(text, WORDS, 9)
    assert fitted.shortened and fitted.tokens <= 9 and fitted.dropped


def test_surrounding_whitespace_is_trimmed():
    assert fit_to_budget("  A ball falls.\n", WORDS, 10) == Fitted("A ball falls.", 3, 10, False, "")


def test_cuts_at_a_sentence_boundary():
    text = "A red ball falls. It bounces twice. Then it rolls away."
    assert fit_to_budget(text, WORDS, 8) == Fitted("A red ball falls. It bounces twice.", 7, 8, True,
                                                   "Then it rolls away.")
    assert fit_to_budget(text, WORDS, 6) == Fitted("A red ball falls.", 4, 6, True,
                                                   "It bounces twice. Then it rolls away.")


def test_whole_sentences_beat_more_words():
    # five words would fit, but the second sentence is cut whole rather than in the middle
    text = "Short one. Then a much longer second sentence goes on."
    assert fit_to_budget(text, WORDS, 5) == Fitted("Short one.", 2, 5, True,
                                                   "Then a much longer second sentence goes on.")


@pytest.mark.parametrize("mark", ["!", "?", "..."])
def test_other_sentence_endings(mark):
    text = f"The glass tips over{mark} Water spills across the table."
    fitted = fit_to_budget(text, WORDS, 5)
    assert fitted == Fitted(f"The glass tips over{mark}", 4, 5, True, "Water spills across the table.")


def test_a_decimal_point_is_not_a_sentence_end():
    text = "The puck slides at 3.5 m/s. It stops."
    assert fit_to_budget(text, WORDS, 6) == Fitted("The puck slides at 3.5 m/s.", 6, 6, True, "It stops.")


def test_cuts_at_a_clause_boundary_when_no_sentence_fits():
    text = "A red ball falls from the balcony, spinning slowly, then hits the pavement."
    fitted = fit_to_budget(text, WORDS, 9)
    # the dangling comma becomes a full stop
    assert fitted == Fitted("A red ball falls from the balcony, spinning slowly.", 9, 9, True,
                            "then hits the pavement.")
    assert fit_to_budget(text, WORDS, 8) == Fitted("A red ball falls from the balcony.", 7, 8, True,
                                                   "spinning slowly, then hits the pavement.")


@pytest.mark.parametrize("mark", [";", ":"])
def test_other_clause_marks(mark):
    text = f"The rope goes taut{mark} the crate lifts off the floor and swings."
    assert fit_to_budget(text, WORDS, 6) == Fitted("The rope goes taut.", 4, 6, True,
                                                   "the crate lifts off the floor and swings.")


def test_cuts_at_a_word_boundary_when_no_clause_fits():
    text = "A red ball falls from the balcony and bounces"
    assert fit_to_budget(text, WORDS, 4) == Fitted("A red ball falls.", 4, 4, True, "from the balcony and bounces")


def test_word_cut_with_the_estimate_keeps_whole_words():
    counter = EstimatedCounter(special_tokens=1)
    text = "Supercalifragilistic momentum transfers between billiard balls"
    fitted = fit_to_budget(text, counter, 9)
    assert fitted.shortened
    assert fitted.text == "Supercalifragilistic momentum."
    assert fitted.tokens == counter.count(fitted.text) == 1 + 5 + 2 + 1
    assert fitted.dropped == "transfers between billiard balls"


def test_nothing_fits():
    text = "Supercalifragilisticexpialidocious ball"
    assert fit_to_budget(text, EstimatedCounter(), 3) == Fitted("", 0, 3, True, text)
    assert fit_to_budget("One. Two.", WORDS, 0) == Fitted("", 0, 0, True, "One. Two.")


def test_special_tokens_alone_over_the_limit():
    # the encoder's special tokens count against the limit even for an empty prompt
    fitted = fit_to_budget("A ball.", EstimatedCounter(special_tokens=5), 4)
    assert fitted.text == "" and fitted.shortened and fitted.dropped == "A ball."


JA = "猫がテーブルに飛び乗る。前足で着地する。"


def test_japanese_sentence_boundary():
    counter = EstimatedCounter(special_tokens=1)
    first = "猫がテーブルに飛び乗る。"
    limit = counter.count(first)
    assert limit == 1 + 3 * len(first)
    assert fit_to_budget(JA, counter, limit) == Fitted(first, limit, limit, True, "前足で着地する。")
    assert fit_to_budget(JA, counter, counter.count(JA)).shortened is False


@pytest.mark.parametrize("text, kept, dropped", [
    ("球从阳台落下！它弹了起来？然后滚走了。", "球从阳台落下！它弹了起来？", "然后滚走了。"),
    ("球从阳台落下，弹了起来，然后滚走了", "球从阳台落下，弹了起来.", "然后滚走了"),
    ("猫がテーブルに飛び乗り、前足で着地し、尻尾を振る", "猫がテーブルに飛び乗り、前足で着地し.", "尻尾を振る"),
], ids=["chinese sentences", "chinese commas", "japanese commas"])
def test_cjk_punctuation_boundaries(text, kept, dropped):
    counter = EstimatedCounter()
    limit = counter.count(kept) + 2  # room for a little more, but not for the next sentence or clause
    fitted = fit_to_budget(text, counter, limit)
    assert fitted == Fitted(kept, counter.count(kept), limit, True, dropped)


def test_cjk_without_punctuation_that_fits_nothing_is_empty():
    # no spaces and no punctuation: there is no safe place to cut, so nothing is kept
    text = "猫がテーブルに飛び乗る"
    assert fit_to_budget(text, EstimatedCounter(), 10) == Fitted("", 0, 10, True, text)


_VOCAB = ("a the ball rubber accelerates gravity supercalifragilistic momentum, falls. bounces! water; "
          "splashes: 3.5 m/s, 猫が 飛び乗る。 🐱 quickly decelerating friction-driven it's").split()


def test_never_cuts_mid_word():
    rng = random.Random(7)
    counter = EstimatedCounter(special_tokens=1)
    for _ in range(300):
        words = [rng.choice(_VOCAB) for _ in range(rng.randint(1, 30))]
        text = " ".join(words)
        limit = rng.randint(0, counter.count(text) + 3)
        fitted = fit_to_budget(text, counter, limit)
        assert fitted.limit == limit
        if not fitted.shortened:
            assert fitted == Fitted(text, counter.count(text), limit, False, "")
            continue
        assert counter.count(text) > limit
        if not fitted.text:
            assert fitted.dropped == text and fitted.tokens == 0
            continue
        assert fitted.tokens == counter.count(fitted.text) <= limit
        kept = fitted.text.split()
        # every kept word is a whole word of the original, in order; only the last one's final mark may change
        assert kept[:-1] == words[: len(kept) - 1], (text, fitted)
        strip = ".,;:，；：、"
        assert kept[-1].rstrip(strip) == words[len(kept) - 1].rstrip(strip), (text, fitted)
        assert fitted.text[-1] in ".!?。！？"
        # what was dropped is exactly the rest of the words
        assert fitted.dropped.split() == words[len(kept):], (text, fitted)


# --- EstimatedCounter ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, tokens", [
    ("", 0),
    ("a", 1),
    ("abcd", 1),
    ("abcde", 2),
    ("abcdefghi", 3),
    ("a b c", 3),
    ("hello, world", 2 + 1 + 2),
    ("...", 3),
    ("3.5", 3),
    ("é", 2),
    ("café", 1 + 2),
    ("猫", 3),
    ("🐱", 4),
    ("قطة", 6),
    ("  \n\t ", 0),
])
def test_estimate_counts(text, tokens):
    assert EstimatedCounter().count(text) == tokens
    assert EstimatedCounter(special_tokens=2).count(text) == tokens + 2


def test_estimate_description():
    assert EstimatedCounter().description == "estimate"


PHYSICS_PROSE = [
    "A red rubber ball falls from a balcony, accelerating under gravity, and bounces lower each time.",
    "It is on the top of a box and it can go up or down.",
    "Water pours from a glass pitcher into a bowl, splashing as the stream hits the surface.",
    "A heavy steel wrecking ball swings on its chain, hits the brick wall and knocks bricks loose.",
    "Sunlight refracts through a glass prism and splits into a rainbow on the white wall.",
    "The skater pulls in her arms; her spin speeds up as angular momentum is conserved.",
    "An ice cube melts in a pan of hot oil, hissing as the water boils away into steam.",
]


@pytest.mark.parametrize("text", PHYSICS_PROSE)
def test_estimate_is_conservative_for_english_prose(text):
    # any subword tokenizer spends at least one token per word and one per punctuation mark
    words = len(text.split())
    marks = len(re.findall(r"[^\w\s]", text))
    assert EstimatedCounter().count(text) >= words + marks
    assert EstimatedCounter(special_tokens=1).count(text) >= words + marks + 1


# --- TokenizerCounter and counter_for ------------------------------------------------------------

def test_tokenizer_counter_counts_input_ids(tiny_tokenizer):
    counter = TokenizerCounter(tiny_tokenizer)
    assert counter.description == f"tokenizer {type(tiny_tokenizer).__name__}"
    assert TokenizerCounter(tiny_tokenizer, "t5").description == "t5"
    for text in PHYSICS_PROSE + ["猫がテーブルに飛び乗る。", "🐱🎈", ""]:
        assert counter.count(text) == len(tiny_tokenizer(text)["input_ids"])
    assert counter.count("") == 0
    assert counter.count("a ball falls") > 0


def test_tokenizer_counter_does_not_truncate(tiny_tokenizer):
    counter = TokenizerCounter(tiny_tokenizer)
    text = " ".join(["gravity"] * (tiny_tokenizer.model_max_length + 10))
    assert counter.count(text) > tiny_tokenizer.model_max_length


def test_fit_with_a_tokenizer(tiny_tokenizer):
    counter = TokenizerCounter(tiny_tokenizer)
    text = " ".join(PHYSICS_PROSE)
    limit = counter.count(PHYSICS_PROSE[0] + " " + PHYSICS_PROSE[1])
    fitted = fit_to_budget(text, counter, limit)
    assert fitted.shortened
    assert fitted.text == PHYSICS_PROSE[0] + " " + PHYSICS_PROSE[1]
    assert fitted.tokens == limit
    assert fitted.dropped == " ".join(PHYSICS_PROSE[2:])


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_counter_for_without_tokenizer_is_the_estimate(name):
    target = get_target(name)
    counter = counter_for(target)
    assert isinstance(counter, EstimatedCounter)
    assert counter.special_tokens == target.special_tokens
    assert counter.count("") == target.special_tokens


def test_counter_for_wraps_a_tokenizer(tiny_tokenizer):
    counter = counter_for(get_target("lavie"), tiny_tokenizer)
    assert isinstance(counter, TokenizerCounter) and counter.tokenizer is tiny_tokenizer


def test_counter_for_passes_a_counter_through():
    assert counter_for(get_target("generic"), WORDS) is WORDS


def test_counter_for_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer folder not found"):
        counter_for(get_target("cogvideox"), str(tmp_path / "nope"))


def test_counter_for_a_tokenizer_folder(tiny_tokenizer, tmp_path):
    folder = tmp_path / "tokenizer"
    tiny_tokenizer.save_pretrained(folder)
    for source in (folder, str(folder)):
        counter = counter_for(get_target("cogvideox"), source)
        assert isinstance(counter, TokenizerCounter)
        assert counter.description == "tokenizer tokenizer"
        assert counter.count(PHYSICS_PROSE[0]) == TokenizerCounter(tiny_tokenizer).count(PHYSICS_PROSE[0])
    assert load_tokenizer_counter(str(folder) + "/").description == "tokenizer tokenizer"
