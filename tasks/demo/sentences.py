"""Demo text: templates + a polarity lexicon, the strength of the sentence = the text view."""

from __future__ import annotations

import math

import numpy as np

from tasks.demo.views import VIEW_CLIP

# Adjectives by signed strength level; level 0 words are only mildly evaluative.
LEXICON: dict[int, tuple[str, ...]] = {
    -3: ("terrible", "awful", "horrible", "dreadful", "atrocious", "unbearable"),
    -2: ("bad", "boring", "poor", "disappointing", "annoying", "clumsy"),
    -1: ("dull", "mediocre", "bland", "weak", "forgettable", "tedious"),
    0: ("okay", "average", "ordinary", "acceptable", "passable"),
    1: ("good", "nice", "pleasant", "decent", "solid", "likable"),
    2: ("great", "excellent", "enjoyable", "impressive", "charming", "delightful"),
    3: ("amazing", "brilliant", "outstanding", "wonderful", "fantastic", "superb"),
}
# Modifiers shift a level by about a third, so strength is finer than the seven levels.
INTENSIFIERS: tuple[str, ...] = ("really", "very", "truly", "extremely", "incredibly")
HEDGES: tuple[str, ...] = ("somewhat", "fairly", "rather", "mostly", "slightly")
ASPECTS: tuple[str, ...] = (
    "acting",
    "story",
    "plot",
    "soundtrack",
    "ending",
    "dialogue",
    "cast",
    "script",
    "pacing",
    "camera work",
    "special effects",
    "main character",
    "music",
)
WORKS: tuple[str, ...] = ("movie", "film", "show", "series", "documentary")
# {a} = an aspect, {w} = a work, {p} = the polarity phrase (one or two words).
TEMPLATES: tuple[str, ...] = (
    "I thought the {a} was {p}.",
    "Honestly, the {a} was {p} from start to finish.",
    "The {a} in this {w} felt {p} to me.",
    "Overall, this {w} was {p}.",
    "Overall I would say this {w} is {p}.",
    "My friends and I found the {a} {p}.",
    "I have to say the {a} is {p}.",
    "Watching this {w}, I felt the {a} was {p}.",
    "To be honest, the {w} was {p}.",
    "In my opinion the {a} of this {w} is {p}.",
)
# Sentences with no polarity word at all (the neutral_text fraction).
NEUTRAL_SENTENCES: tuple[str, ...] = (
    "The movie is about two brothers who travel north.",
    "I watched the film on a Sunday afternoon.",
    "The story takes place in a small coastal town.",
    "It runs for about two hours with one intermission.",
    "The director also wrote the script for this one.",
    "Most of the scenes were shot in the desert.",
    "The main character works as a nurse in the city.",
    "I saw it at the cinema with my sister.",
    "The soundtrack uses a lot of piano and strings.",
    "The film came out last spring in a few countries.",
    "There are three main characters and a dog.",
    "It is based on a novel from the nineties.",
)


def polarity_phrase(view: float, rng: np.random.Generator) -> tuple[str, float]:
    """A one- or two-word polarity phrase for ``view`` and the signed strength it renders."""
    v = float(np.clip(view, -VIEW_CLIP, VIEW_CLIP))
    # Round half away from zero (Python's round(-0.5) is 0): the sign follows the view.
    level = int(math.copysign(min(3, math.floor(abs(v) + 0.5)), v))
    adjective = str(rng.choice(LEXICON[level]))
    # The modifier encodes what rounding dropped: intensify towards the pole, or hedge.
    rest = abs(v) - abs(level)
    if level != 0 and rest > 0.17:
        return f"{rng.choice(INTENSIFIERS)} {adjective}", math.copysign(abs(level) + 0.33, level)
    if level != 0 and rest < -0.17:
        return f"{rng.choice(HEDGES)} {adjective}", math.copysign(abs(level) - 0.33, level)
    return adjective, float(level)


def make_text(view: float, neutral: bool, rng: np.random.Generator) -> tuple[str, float]:
    """An opinion sentence (5-12 words) whose polarity is ``view``; neutral ones have none."""
    if neutral:
        return str(rng.choice(NEUTRAL_SENTENCES)), 0.0
    phrase, strength = polarity_phrase(view, rng)
    template = str(rng.choice(TEMPLATES))
    text = template.format(a=rng.choice(ASPECTS), w=rng.choice(WORKS), p=phrase)
    return text, strength
