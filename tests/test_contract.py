"""The output contract's one parser, on the shapes real refiner output takes."""

import random
import re

import pytest

from phyprompt.language.contract import (PROMPT_CLOSE, PROMPT_OPEN, THINK_CLOSE, THINK_OPEN, ParsedOutput,
                                          format_output, parse_output)

ANY_TAG = re.compile(r"<\s*/?\s*(?:think|prompt)\s*>", re.IGNORECASE)

REASONING = "The ball is rubber, so gravity accelerates it and each bounce loses energy."
PROMPT = "A red rubber ball falls from a balcony, bounces on the pavement and rises lower each time."


def answer(reasoning=REASONING, prompt=PROMPT) -> str:
    return f"<think>{reasoning}</think><prompt>{prompt}</prompt>"


# --- well-formed and repairable answers ------------------------------------------------------------

# (raw answer, expected prompt, expected reasoning, expected repairs)
GOOD = {
    "canonical": (answer(), PROMPT, REASONING, ()),
    "canonical with newline": (f"<think>\n{REASONING}\n</think>\n<prompt>\n{PROMPT}\n</prompt>", PROMPT, REASONING, ()),
    "missing </prompt>": (f"<think>{REASONING}</think><prompt>{PROMPT}", PROMPT, REASONING, ("missing </prompt>",)),
    "missing </prompt>, trailing newline": (
        f"<think>{REASONING}</think>\n<prompt>{PROMPT}\n", PROMPT, REASONING, ("missing </prompt>",)),
    "closing tag cut off by max_new_tokens": (
        f"<think>{REASONING}</think><prompt>{PROMPT}</pro", PROMPT, REASONING,
        ("cut-off tag at the end", "missing </prompt>")),
    "closing tag without >": (
        f"<think>{REASONING}</think><prompt>{PROMPT}</prompt", PROMPT, REASONING,
        ("cut-off tag at the end", "missing </prompt>")),
    "lone < at the end": (
        f"<think>{REASONING}</think><prompt>{PROMPT} <", PROMPT, REASONING,
        ("cut-off tag at the end", "missing </prompt>")),
    "markdown fence around all": (
        f"```xml\n<think>{REASONING}</think>\n<prompt>{PROMPT}</prompt>\n```", PROMPT, REASONING, ("markdown fences",)),
    "markdown fence inside prompt": (
        f"<think>{REASONING}</think><prompt>\n```text\n{PROMPT}\n```\n</prompt>", PROMPT, REASONING,
        ("markdown fences",)),
    "chatter before and after": (
        f"Sure! Here is my answer.\n<think>{REASONING}</think>\n<prompt>{PROMPT}</prompt>\nHope this helps!",
        PROMPT, REASONING, ()),
    "special token after": (answer() + "<|im_end|>", PROMPT, REASONING, ()),
    "stray extra </prompt>": (answer() + "</prompt>", PROMPT, REASONING, ()),
    "think block after prompt is ignored": (answer() + "\n<think>more thoughts</think>", PROMPT, REASONING, ()),
    "tag case and spaces": (
        f"<Think >{REASONING}</THINK><Prompt >{PROMPT}</ prompt>", PROMPT, REASONING, ()),
    "spaced tags": (f"< think >{REASONING}< / think >< PROMPT >{PROMPT}< / Prompt >", PROMPT, REASONING, ()),
    "whitespace collapsed": (
        "<think>  The ball\n\n falls.  </think><prompt>\n  A red ball\n\tfalls   fast.\n</prompt>",
        "A red ball falls fast.", "The ball falls.", ()),
    "double quotes": (answer(prompt=f'"{PROMPT}"'), PROMPT, REASONING, ()),
    "single quotes": (answer(prompt=f"'{PROMPT}'"), PROMPT, REASONING, ()),
    "curly quotes": (answer(prompt=f"“{PROMPT}”"), PROMPT, REASONING, ()),
    "backticks": (answer(prompt=f"`{PROMPT}`"), PROMPT, REASONING, ()),
    "single quotes around apostrophes": (
        answer(prompt="'The cat's paw taps the ball.'"), "The cat's paw taps the ball.", REASONING, ()),
    "inner quotes are kept": (
        answer(prompt='"Thud" sounds as the ball lands, then "boing"'),
        '"Thud" sounds as the ball lands, then "boing"', REASONING, ()),
    "repeated prompt: last wins": (
        f"<think>{REASONING}</think><prompt>A ball falls.</prompt>\nBetter:\n<prompt>{PROMPT}</prompt>",
        PROMPT, REASONING, ("2 <prompt> openings",)),
    "placeholder copy then the real one": (
        f"<think>{REASONING}</think><prompt>the rewritten video prompt</prompt><prompt>{PROMPT}</prompt>",
        PROMPT, REASONING, ("2 <prompt> openings",)),
    "real one then a placeholder copy": (
        f"<think>{REASONING}</think><prompt>{PROMPT}</prompt>\n\nFormat: <prompt>the rewritten video prompt</prompt>",
        PROMPT, REASONING, ("2 <prompt> openings",)),
    "real one then an empty block": (
        f"<think>{REASONING}</think><prompt>{PROMPT}</prompt><prompt></prompt>",
        PROMPT, REASONING, ("2 <prompt> openings",)),
    "second block unclosed": (
        f"<think>{REASONING}</think><prompt>A ball.</prompt><prompt>{PROMPT}",
        PROMPT, REASONING, ("2 <prompt> openings", "missing </prompt>")),
    "several think blocks: last before prompt": (
        f"<think>first idea</think><think>{REASONING}</think><prompt>{PROMPT}</prompt>", PROMPT, REASONING, ()),
    "missing </think>": (f"<think>{REASONING}\n<prompt>{PROMPT}</prompt>", PROMPT, REASONING, ()),
    "untagged prompt after </think>": (
        f"<think>{REASONING}</think>\n{PROMPT}", PROMPT, REASONING, ("untagged prompt after </think>",)),
    "missing <prompt>": (
        f"<think>{REASONING}</think>\n{PROMPT}</prompt>", PROMPT, REASONING, ("missing <prompt>",)),
    "missing <prompt> and reasoning": (f"{PROMPT}</prompt>", PROMPT, "", ("missing <prompt>", "no reasoning")),
    "prompt only": (f"<prompt>{PROMPT}</prompt>", PROMPT, "", ("no reasoning",)),
    "empty think": (f"<think></think><prompt>{PROMPT}</prompt>", PROMPT, "", ("no reasoning",)),
    "japanese": ("<think>猫は重力で落ちる</think><prompt>猫がテーブルに飛び乗る。🐱</prompt>",
                 "猫がテーブルに飛び乗る。🐱", "猫は重力で落ちる", ()),
    "chinese": ("<think>球受重力加速</think><prompt>一只红色皮球从阳台落下，弹起越来越低。</prompt>",
                "一只红色皮球从阳台落下，弹起越来越低。", "球受重力加速", ()),
    "arabic (rtl)": ("<think>الجاذبية</think><prompt>قطة تقفز على الطاولة\u200f</prompt>",
                     "قطة تقفز على الطاولة\u200f", "الجاذبية", ()),
    "emoji only": (answer(prompt="🐱🎈💧"), "🐱🎈💧", REASONING, ()),
    "emoji zwj sequence": (answer(prompt="A family 👨\u200d👩\u200d👧 watches a ball fall."),
                           "A family 👨\u200d👩\u200d👧 watches a ball fall.", REASONING, ()),
    "comparison signs are not tags": (
        answer(prompt="A < B: the heavier ball > the light one hits first."),
        "A < B: the heavier ball > the light one hits first.", REASONING, ()),
    "trailing ellipsis is text": (answer(prompt="A ball falls..."), "A ball falls...", REASONING, ()),
}


@pytest.mark.parametrize("raw, prompt, reasoning, repairs", GOOD.values(), ids=GOOD.keys())
def test_parses(raw, prompt, reasoning, repairs):
    parsed = parse_output(raw)
    assert parsed == ParsedOutput(True, prompt, reasoning, None, repairs)


# --- answers with no usable prompt -----------------------------------------------------------------

# (raw answer, expected reasoning, expected error, expected repairs)
BAD = {
    "empty string": ("", "", "no <prompt> in the answer", ()),
    "whitespace": ("  \n\t ", "", "no <prompt> in the answer", ()),
    "plain chatter": ("I cannot help with that.", "I cannot help with that.", "no <prompt> in the answer", ()),
    "reasoning never ends": (f"<think>{REASONING} and then", f"{REASONING} and then", "no <prompt> in the answer", ()),
    "reasoning only": (f"<think>{REASONING}</think>", REASONING, "no <prompt> in the answer", ()),
    "reasoning then an empty fence": (
        f"<think>{REASONING}</think>\n```\n```", REASONING, "no <prompt> in the answer", ("markdown fences",)),
    "empty prompt": (answer(prompt=""), REASONING, "the <prompt> block is empty", ()),
    "blank prompt": (answer(prompt=" \n "), REASONING, "the <prompt> block is empty", ()),
    "unclosed empty prompt": (f"<think>{REASONING}</think><prompt>\n", REASONING, "the <prompt> block is empty", ()),
    "placeholder": (answer(prompt="the rewritten video prompt"), REASONING, "the <prompt> block is empty", ()),
    "placeholder, capitalised": (
        answer(prompt="The Rewritten Video Prompt."), REASONING, "the <prompt> block is empty", ()),
    "reasoning placeholder in prompt": (
        answer(prompt="your physical reasoning"), REASONING, "the <prompt> block is empty", ()),
    "three dots": (answer(prompt="..."), REASONING, "the <prompt> block is empty", ()),
    "ellipsis character": (answer(prompt="…"), REASONING, "the <prompt> block is empty", ()),
    "only quotes": (answer(prompt='""'), REASONING, "the <prompt> block is empty", ()),
    "a lone quote": (answer(prompt='"'), REASONING, "the <prompt> block is empty", ()),
    "only punctuation": (answer(prompt="!!! ?"), REASONING, "the <prompt> block is empty", ()),
    "two empty blocks": (
        f"<think>{REASONING}</think><prompt></prompt><prompt> </prompt>", REASONING, "the <prompt> block is empty",
        ("2 <prompt> openings",)),
    "untagged placeholder": (
        f"<think>{REASONING}</think>\nthe rewritten video prompt", REASONING, "the prompt is empty",
        ("untagged prompt after </think>",)),
    "bare closing tag": (f"<think>{REASONING}</think></prompt>", REASONING, "the prompt is empty",
                         ("missing <prompt>",)),
    "prompt repeats reasoning": (answer(prompt=REASONING), REASONING, "the prompt only repeats the reasoning", ()),
    "prompt repeats reasoning, other case": (
        answer(prompt=REASONING.upper().rstrip(".")), REASONING, "the prompt only repeats the reasoning", ()),
    "prompt near-copy of reasoning": (
        answer(prompt=REASONING.replace("rubber", "rubbery")), REASONING,
        "the prompt only repeats the reasoning", ()),
    "untagged echo": (
        f"<think>{REASONING}</think>\n{REASONING}", REASONING, "the prompt only repeats the reasoning",
        ("untagged prompt after </think>",)),
}


@pytest.mark.parametrize("raw, reasoning, error, repairs", BAD.values(), ids=BAD.keys())
def test_rejects(raw, reasoning, error, repairs):
    parsed = parse_output(raw)
    assert parsed == ParsedOutput(False, "", reasoning, error, repairs)


def test_short_prompt_is_not_mistaken_for_an_echo():
    parsed = parse_output(answer(reasoning="Gravity pulls the ball down.", prompt="A ball drops onto grass."))
    assert parsed.ok and parsed.prompt == "A ball drops onto grass."


def test_prompt_that_extends_the_reasoning_is_kept():
    prompt = REASONING + " Slow motion, a sunny street, the camera tracks the ball from the side."
    parsed = parse_output(answer(prompt=prompt))
    assert parsed.ok and parsed.prompt == prompt


def test_nested_prompt_tags_give_a_tag_free_prompt():
    parsed = parse_output(f"<think>{REASONING}</think><prompt>A red ball <prompt>falls fast.</prompt></prompt>")
    assert parsed.ok
    assert "falls fast." in parsed.prompt and not ANY_TAG.search(parsed.prompt)
    assert "2 <prompt> openings" in parsed.repairs


def test_tags_inside_reasoning_do_not_leak():
    parsed = parse_output(f"<think>I will write <prompt>x</prompt> later</think><prompt>{PROMPT}</prompt>")
    assert parsed.ok and parsed.prompt == PROMPT
    assert not ANY_TAG.search(parsed.reasoning)


def test_a_prompt_mentioning_the_word_prompt_is_fine():
    parsed = parse_output(answer(prompt="Prompt: a ball falls and the word think is written on it."))
    assert parsed.ok and parsed.prompt == "Prompt: a ball falls and the word think is written on it."


def test_parser_input_with_assistant_prefix():
    # the refiner always hands the parser its `<think>\n` prefix in front of the generated text
    from phyprompt.language.instruction import ASSISTANT_PREFIX

    parsed = parse_output(ASSISTANT_PREFIX + f"{REASONING}\n</think>\n<prompt>{PROMPT}</prompt>")
    assert parsed == ParsedOutput(True, PROMPT, REASONING, None, ())


# --- format_output ---------------------------------------------------------------------------------

def test_format_output_is_canonical():
    assert format_output(f"  {REASONING}\n", f"\n{PROMPT} ") == (
        f"{THINK_OPEN}{REASONING}{THINK_CLOSE}\n{PROMPT_OPEN}{PROMPT}{PROMPT_CLOSE}")


@pytest.mark.parametrize("reasoning, prompt", [
    (REASONING, PROMPT),
    ("短い推論", "猫がテーブルに飛び乗る。"),
    ("الجاذبية تسحب الكرة", "قطة تقفز على الطاولة 🐱"),
    ("Momentum; friction: drag!", 'A puck slides on ice, slowing slightly — "whoosh".'),
])
def test_format_output_round_trips(reasoning, prompt):
    assert parse_output(format_output(reasoning, prompt)) == ParsedOutput(True, prompt, reasoning, None, ())


# --- never raises --------------------------------------------------------------------------------

_ATOMS = [
    "<think>", "</think>", "<prompt>", "</prompt>", "<Prompt >", "< / PROMPT>", "</pro", "<", ">", "/", "```",
    "```json\n", "\n", " ", '"', "'", "“", "”", "`", "...", "…", "the rewritten video prompt",
    "your physical reasoning", "A ball falls.", "猫", "🐱", "قطة", "\u200f", "\x00", "\t", "gravity", ",",
    "prompt", "think",
]


def _garbage(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(0, 24)):
        roll = rng.random()
        if roll < 0.7:
            pieces.append(rng.choice(_ATOMS))
        elif roll < 0.85:
            pieces.append(chr(rng.randint(0x20, 0x7E)))
        else:
            code = rng.randint(0, 0x10FFFF)
            pieces.append(chr(code) if not 0xD800 <= code <= 0xDFFF else "?")
    return "".join(pieces)


def test_random_garbage_never_raises():
    rng = random.Random(1234)
    outcomes = {True: 0, False: 0}
    for _ in range(600):
        text = _garbage(rng)
        parsed = parse_output(text)
        assert isinstance(parsed, ParsedOutput)
        outcomes[parsed.ok] += 1
        if parsed.ok:
            assert parsed.prompt.strip(), text
            assert parsed.prompt == parsed.prompt.strip(), text
            assert not ANY_TAG.search(parsed.prompt), text
            assert parsed.error is None
        else:
            assert parsed.prompt == "" and isinstance(parsed.error, str) and parsed.error, text
        assert not ANY_TAG.search(parsed.reasoning), text
        assert isinstance(parsed.repairs, tuple) and all(isinstance(r, str) for r in parsed.repairs)
    # the generator reaches both outcomes, so the loop checks both branches
    assert outcomes[True] > 50 and outcomes[False] > 50, outcomes
