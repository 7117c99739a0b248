"""Emotion vocabularies: class names, synonyms and prompt templates.

The text classifier is initialised from these; any list of class names works, and
names missing here fall back to the name itself with the generic templates. Sentences
describing each class (stage 1's ``descriptions`` init) live in :mod:`cascade.descriptions`.
"""
from __future__ import annotations

from dataclasses import dataclass

TEMPLATES: list[str] = [
    "a photo that evokes {}.",
    "an image that makes people feel {}.",
    "a picture expressing {}.",
    "a photo of a {} scene.",
    "an image full of {}.",
    "a {} photo.",
]

# Synonyms of each class name, the name first (the templates are filled with each).
_ENTRIES: dict[str, list[str]] = {
    "anger": ["anger", "rage", "fury", "outrage"],
    "disgust": ["disgust", "revulsion", "repulsion", "nausea"],
    "fear": ["fear", "terror", "dread", "horror"],
    "joy": ["joy", "happiness", "delight", "cheerfulness"],
    "sadness": ["sadness", "sorrow", "grief", "melancholy"],
    "surprise": ["surprise", "astonishment", "amazement", "shock"],
    "neutral": ["neutral", "calm", "indifference", "plainness"],
    "amusement": ["amusement", "fun", "playfulness", "humour"],
    "awe": ["awe", "wonder", "grandeur", "majesty"],
    "contentment": ["contentment", "serenity", "peacefulness", "satisfaction"],
    "excitement": ["excitement", "thrill", "exhilaration", "enthusiasm"],
    "happiness": ["happiness", "joy", "gladness", "cheer"],
    "contempt": ["contempt", "scorn", "disdain", "sneer"],
}


@dataclass
class ClassVocabulary:
    name: str
    synonyms: list[str]


EMOTION6 = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
EMOTION6_NEUTRAL = EMOTION6 + ["neutral"]
MIKELS8 = ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"]
FERPLUS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
VOCABULARIES: dict[str, list[str]] = {
    "emotion6": EMOTION6,
    "emotion6+neutral": EMOTION6_NEUTRAL,
    "mikels8": MIKELS8,
    "ferplus": FERPLUS,
}


def class_vocabulary(name: str) -> ClassVocabulary:
    """The vocabulary entry for one class; unknown names use the name alone."""
    key = name.strip().lower()
    if key in _ENTRIES:
        return ClassVocabulary(name=name, synonyms=list(_ENTRIES[key]))
    return ClassVocabulary(name=name, synonyms=[key.replace("_", " ")])


def vocabulary(classnames: list[str]) -> list[ClassVocabulary]:
    if len(classnames) < 2:
        raise ValueError(f"classnames: need at least 2 classes, got {classnames}")
    if len({c.strip().lower() for c in classnames}) != len(classnames):
        raise ValueError(f"classnames: duplicate class names in {classnames}")
    return [class_vocabulary(c) for c in classnames]
