"""The parse-rate metric: which answers are usable as they are, why the others are not, and the rate."""

import subprocess
import sys

from conftest import REPO
from phyprompt.language.metrics import ParseRate, failure_reason, parse_rate, usable
from phyprompt.refiners.base import Refinement

GOOD = "<think>Gravity pulls the cat down.</think><prompt>A cat leaps and lands softly on a table.</prompt>"
LONG = "<think>Many details.</think><prompt>" + "a ball bounces on a hard wooden floor, " * 40 + "</prompt>"


def answer(text: str, target: str = "lavie") -> Refinement:
    return Refinement.from_answer("a cat jumps", text, target)


def test_a_parsed_answer_within_budget_is_usable():
    good = answer(GOOD)
    assert usable(good) and failure_reason(good) == ""


def test_a_fallback_a_shortened_prompt_and_an_over_budget_one_are_not():
    fallback, shortened = answer("the model rambles without tags"), answer(LONG)
    assert not fallback.ok and not usable(fallback) and failure_reason(fallback) == fallback.error
    assert shortened.ok and shortened.shortened and failure_reason(shortened) == "over budget"
    truncated = Refinement(original="a", prompt="b", reasoning="", ok=True, error=None, target="lavie", tokens=90,
                           token_limit=77, token_counter="estimate")
    assert not usable(truncated) and failure_reason(truncated) == "over budget"
    rejected = Refinement(original="a", prompt="a", reasoning="", ok=False, error=None, target="lavie", tokens=1,
                          token_limit=77, token_counter="estimate")
    assert failure_reason(rejected) == "rejected"


def test_parse_rate_counts_failures_most_common_first():
    results = [answer(GOOD), answer(LONG), answer("no tags"), answer(LONG), answer(GOOD), answer(GOOD)]
    summary = parse_rate(iter(results))  # any iterable, read once
    assert summary == ParseRate(usable=3, total=6, failures={"over budget": 2, answer("no tags").error: 1})
    assert summary.rate == 0.5 and list(summary.failures)[0] == "over budget"


def test_no_answers_is_a_zero_rate_not_an_error():
    assert parse_rate([]) == ParseRate(usable=0, total=0) and parse_rate([]).rate == 0.0


def test_the_metric_is_light():
    run = subprocess.run([sys.executable, "-c", "import sys, phyprompt.language.metrics; print('torch' in sys.modules)"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stderr


def test_format_eval_reports_rates_per_target_and_failures():
    from train.format_eval import evaluate, format_table

    class Scripted:  # answers by target: cogvideox all good, lavie one good and two failures
        def refine(self, prompts, target, **_options):
            texts = {"cogvideox": [GOOD] * 3, "lavie": [GOOD, LONG, "no tags"]}[target]
            return [answer(text, target) for text in texts]

    result = evaluate(Scripted(), ["p1", "p2", "p3"], ("cogvideox", "lavie"))
    assert result["per_target"] == {"cogvideox": 1.0, "lavie": 1 / 3} and result["overall"] == 4 / 6
    assert [a["usable"] for a in result["answers"]] == [True] * 4 + [False] * 2
    assert result["fallback"] == 1 / 6  # only "no tags" fell back; the long one was shortened
    table = format_table("tiny", result, 3)
    assert table.splitlines()[-3:] == ["| all | 67% |", "fallback to the original prompt: 17%",
                                       f"failures: 1× over budget; 1× {answer('no tags').error}"]
