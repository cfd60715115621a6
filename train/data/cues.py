"""The cue set: the built-in refiner's training data, made from the concise set.

Each concise example becomes one whose reasoning names the kind of physics in the scene (its subcategory)
and whose refined prompt is the concise one's restatement of the user's words, followed by that kind's cue: one
general rule of it that holds in any such scene ("Each swing is fastest at the bottom of the arc…").

Why: a 135M model cannot reason about a scene's physics. Trained on the concise set's scene-specific
sentences it wrote scene-specific sentences that were wrong in four answers of five (the blind read in the
built-in's model card). What it can do is recognise the kind of scene and restate it, so that is all it is
taught. Its mistakes are then a wrong kind of scene, whose rule is mostly beside the point, rather than
invented forces. The rules are the project's own writing, one per subcategory of the concise set.

    python -m train.data cues train/data/concise_*.jsonl --out-dir train/data   # writes cue_<category>.jsonl
"""

from __future__ import annotations

import re
from dataclasses import replace

from .schema import Example

SOURCE = "phyprompt-cue"

CUES = {
    # mechanics
    "air resistance": "Air pushes back on what falls through it, so a wide, light shape drifts down slowly and "
                      "steadily.",
    "balance": "What stays up keeps its weight over its support; once it leans past that point, it tips and falls.",
    "collisions": "At each impact the moving thing stops or bounces back, and what it hits is knocked in the "
                  "direction of the blow.",
    "friction": "Rubbing surfaces drag against each other, so sliding slows down and stops once nothing pushes.",
    "gravity": "Gravity pulls everything down: what drops speeds up as it falls until it lands.",
    "momentum": "Moving things keep going until something stops them, and heavy ones are the hardest to stop or "
                "start.",
    "pendulums": "Each swing is fastest at the bottom of the arc and slows to a brief stop at either end.",
    "projectiles": "Once in the air, it flies in a smooth curved arc, rising, slowing at the top, then falling "
                   "faster.",
    "rolling": "A rolling thing turns as it moves, without skidding, speeding up downhill and slowing uphill.",
    "rotation": "The spinning part turns around a fixed center, and everything on it moves in circles around that "
                "center.",
    "springs": "Squeezed or stretched, the spring pushes back, so the load bounces, each bounce a little smaller "
               "than the last.",
    # deformation
    "bending": "Under the load the long piece curves, bending most where the force is greatest, and straightens "
               "when the load is gone.",
    "crushing": "The heavy pressing force squashes the softer material flat, and it stays squashed after the force "
                "is gone.",
    "cutting": "The sharp edge presses into the material and splits it along its path, one side coming apart from "
               "the other.",
    "elastic deformation": "On impact it squashes, then springs back to its shape, pushing off as it does.",
    "fracture": "Brittle material does not bend: it cracks suddenly and breaks into sharp pieces that fall or "
                "scatter.",
    "plastic deformation": "The material bends or dents under the force and stays that way; it does not spring "
                           "back.",
    "stretching": "Pulled from both ends, the material grows longer and thinner, most of all at its narrowest part.",
    "tearing": "Pulled hard enough, the material tears along a ragged line, the rip spreading from where it starts.",
    # fluids
    "bubbles": "Each bubble is a round pocket of air: bubbles in a liquid rise to the top, and bubbles in air drift "
               "and pop.",
    "buoyancy": "Things less dense than water float, riding lower as they are loaded, while denser things sink to "
                "the bottom.",
    "drops": "Water gathers into round beads held together by surface tension, and a drop falls once it grows too "
             "heavy to hang.",
    "flow": "The water runs downhill along the lowest path, speeding up on steep slopes and spreading out on flat "
            "ground.",
    "pouring": "The poured liquid falls in a smooth stream under gravity and spreads out where it lands.",
    "splashing": "Where it hits the water, liquid sprays up and outward in droplets that arc and fall back, leaving "
                 "ripples.",
    "viscosity": "The thick liquid flows slowly, folding and piling up on itself instead of splashing.",
    "waves": "Waves travel across the surface, lifting and dropping floating things in place rather than carrying "
             "them along.",
    "wind": "The wind pushes light things along in its direction, and gusts make them flutter and swirl.",
    # interactions: said of no one in particular, so a scene taken for the wrong kind is not given a person
    "animal-object": "Each push moves what it touches: a light object moves easily, a heavy one barely.",
    "games and toys": "What is thrown or launched comes back down under gravity, and each push or pull moves the toy "
                      "the way it is pushed.",
    "human-animal": "Each pull, throw or push moves what it acts on in that direction, and lighter things move more.",
    "human-object": "Each push or pull moves the object in that direction; a heavy object starts slowly and is hard "
                    "to stop.",
    "object-object": "When objects meet, each pushes on the other and the lighter one is knocked away harder; "
                     "dropped things fall under gravity.",
    "sports": "Whatever is hit, thrown or launched flies in a smooth arc and falls back under gravity.",
    "tools": "The tool turns each push into force on the material, which gives way only where the tool meets it.",
    "vehicles": "The vehicle speeds up and slows gradually, its wheels gripping the ground, and what it carries "
                "moves with it.",
    # optics
    "dispersion": "White light splits into a fan of rainbow colors as it passes through the glass.",
    "glare": "Bright sunlight reflects off the shiny surfaces into the camera, washing out detail around the glare.",
    "interference": "The thin film shows shifting rainbow colors that change as the viewing angle changes.",
    "iridescence": "The colors shimmer and shift with the viewing angle as the surface moves in the light.",
    "light sources": "The light source lights up nearby things most brightly, and the light fades and shadows "
                     "stretch farther from it.",
    "night lighting": "In the dark, only what the lights hit is bright; everything else stays dim, with strong "
                      "contrast and long shadows.",
    "rainbows": "The rainbow shows in the water drops opposite the sun, as a curved band of colors with red on the "
                "outside.",
    "rectilinear propagation": "Light travels in straight lines, so the small hole casts an upside-down image.",
    "reflection": "The smooth surface shows a mirror image, reversed, that matches every movement.",
    "refraction": "Where light passes between water or glass and air it bends, so what lies behind or under the "
                  "surface looks shifted.",
    "scattering": "Tiny particles in the air scatter the light, so beams show as glowing shafts and distant things "
                  "look hazy.",
    "shadows": "Each shadow falls on the side away from the light and moves and changes shape as the light or the "
               "object moves.",
    "total internal reflection": "The light stays trapped inside the water stream or fiber, following its curve "
                                 "and glowing where it leaves.",
    "transparency": "Light passes through the clear or thin material, so what lies behind it shows through, tinted "
                    "by its color.",
    # thermal
    "boiling": "The heated liquid bubbles up from the bottom, the bubbles bursting at the surface as steam rises.",
    "burning": "The flames rise upward, flickering, and what burns blackens, shrinks and gives off smoke.",
    "condensation": "Warm, moist air meets the cold surface or cold air and turns into tiny water droplets or white "
                    "mist.",
    "convection": "The heated part rises and the cooled part sinks, in a slow, circling flow.",
    "cooking": "Heat slowly browns and firms the food from the outside in, with sizzling and steam where it is "
               "hottest.",
    "evaporation": "Heat and air slowly dry the wet surface, the water vanishing as faint vapor.",
    "freezing": "In the cold, water turns to ice, spreading in thin white crystals across the surface.",
    "heat glow": "The very hot material glows red to orange, and dims and darkens as it cools.",
    "melting": "Warmed, the solid softens and turns to liquid from the outside in, dripping or spreading as it "
               "melts.",
    "solidification": "As it cools, the liquid coating thickens and sets into a firm solid shell.",
    "steam and smoke": "The hot steam or smoke rises and spreads, thinning out and fading into the air.",
    "sublimation": "The frozen solid turns straight into a white, low-hanging vapor without melting.",
}

# how the reasoning names a kind whose subcategory is not a phrase of its own
KIND_NAMES = {
    "animal-object": "an animal moving an object", "games and toys": "toys in motion",
    "human-animal": "a person and an animal pushing and pulling", "human-object": "a person moving an object",
    "object-object": "objects meeting and pushing each other", "sports": "the motion of a sport",
    "tools": "a tool at work", "vehicles": "a moving vehicle",
}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def restatement(example: Example) -> str:
    """The part of a concise refined prompt that restates the user's words: its first sentence (CogVideoX),
    the clause before the first semicolon (the one-sentence CLIP-budget prompts), else the user's prompt."""
    text = example.refined_prompt.strip()
    if example.target == "cogvideox":
        return _SENTENCE_END.split(text)[0]
    if ";" in text:
        return text.split(";")[0].rstrip(" .")
    return example.user_prompt[0].upper() + example.user_prompt[1:]


def cue_example(example: Example) -> Example:
    """The cue-set example made from a concise one (KeyError for a subcategory without a cue)."""
    cue = CUES[example.subcategory]
    kind = KIND_NAMES.get(example.subcategory, example.subcategory)
    head = restatement(example)
    refined = f"{head} {cue}" if example.target == "cogvideox" else f"{head}; {cue[0].lower()}{cue[1:]}"
    return replace(example, id=example.id.replace("con-", "cue-", 1), source=SOURCE,
                   reasoning=f"The key physics in this scene is {kind}.", refined_prompt=refined)
