"""The one place that tells a refiner what to do: system and user messages, and the plain fallback template.

Everything that talks to a refiner model (the nodes, the CLI, training data and rewards) builds its
messages here, so a trained model sees exactly what it was trained on.
"""

from __future__ import annotations

import re
import unicodedata

from .contract import THINK_OPEN, format_output
from .targets import Target, get_target

# The assistant turn is started with this text so that even a base instruct model opens with its
# reasoning; the parser always sees it in front of what the model generated.
ASSISTANT_PREFIX = THINK_OPEN + "\n"

SYSTEM_PROMPT = """\
You rewrite prompts for a text-to-video model so that the video it makes obeys real-world physics.

First think about the physics of the scene: which objects and materials are involved, what they weigh \
and how rigid, soft, elastic, brittle or liquid they are; the forces acting (gravity, pushes, pulls, \
friction, drag, buoyancy, tension); how momentum carries motion on and what happens at each contact or \
collision; how things deform, break, flow, splash, melt, burn or boil; and how light, shadows, \
reflections and refraction behave. Decide what a camera would really see, moment by moment.

Then write the new prompt. It must:
- keep every subject, action, setting, camera and style detail the user asked for, and add nothing that \
contradicts them;
- state the physically correct motion and interactions explicitly and concretely (what moves, in which \
direction, how fast it speeds up or slows down, what it touches, how materials respond);
- be written as a description of the video, not as instructions or an explanation;
- fit the token budget given below.

Answer in exactly this form and nothing else:
""" + format_output("your physical reasoning", "the rewritten video prompt")

USER_TEMPLATE = """\
Target video model: {label}. Its text encoder reads at most {limit} tokens (about {words} words); \
keep the prompt within that. {style}

User prompt:
{prompt}"""

# Used when a tokenizer has no chat template: a plain role-labelled transcript that any causal LM can
# continue. Kept deliberately simple so a fine-tune on it is easy to reproduce.
PLAIN_TEMPLATE_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}

_CONTRACT_TAG = re.compile(r"<\s*/?\s*(think|prompt)\s*>", re.IGNORECASE)
# Chat-control tokens of common templates (<|im_end|>, <|eot_id|>, </s>): a tokenizer reads these as
# real special tokens even inside user text, which would let a prompt end its own turn.
_CONTROL_TOKEN = re.compile(r"<\|[^<>|\s]{1,40}\|>|<\s*/?\s*s\s*>", re.IGNORECASE)


def sanitize_user_prompt(prompt: str) -> str:
    """The user's text as it goes into the instruction.

    Our own contract tags become plain words (a prompt containing `</prompt>` must not close the
    answer early), chat-control tokens are removed, control characters other than newlines and tabs
    are dropped, and whitespace is trimmed. The user's original text is kept untouched elsewhere for
    the fallback.
    """
    defused = _CONTROL_TOKEN.sub(" ", _CONTRACT_TAG.sub(lambda m: f" {m.group(1)} ", prompt))
    kept = "".join(ch for ch in defused if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    return kept.strip()


def word_budget(target: Target) -> int:
    """Roughly how many English words fit in the target's budget (about 1.3 tokens per word)."""
    return int((target.token_limit - target.special_tokens) / 1.3)


def build_messages(prompt: str, target: str | Target = "generic") -> list[dict[str, str]]:
    """System and user messages that ask a refiner to rewrite `prompt` for `target`."""
    target = get_target(target) if isinstance(target, str) else target
    text = sanitize_user_prompt(prompt)
    if not text:
        raise ValueError("the prompt is empty: describe the scene you want to see")
    user = USER_TEMPLATE.format(
        label=target.label,
        limit=target.token_limit,
        words=word_budget(target),
        style=target.style_hint,
        prompt=text,
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def render_plain(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The documented fallback transcript for tokenizers without a chat template."""
    turns = [f"{PLAIN_TEMPLATE_ROLES[m['role']]}: {m['content']}" for m in messages]
    if add_generation_prompt:
        turns.append(f"{PLAIN_TEMPLATE_ROLES['assistant']}:")
    return "\n\n".join(turns) + ("\n" if add_generation_prompt else "")


def answer_continuation(reasoning: str, prompt: str) -> str:
    """What a refiner should generate after `ASSISTANT_PREFIX`: the rest of the canonical answer.

    Training targets are built with this, so a fine-tuned model learns exactly the text that inference
    expects to follow the prefix it is given.
    """
    return reasoning.strip() + format_output("", prompt).removeprefix(THINK_OPEN)


def render_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """The text a refiner continues: its chat template (or the plain one) plus the assistant prefix."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = render_plain(messages)
    return text + ASSISTANT_PREFIX
