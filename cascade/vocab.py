"""Emotion vocabularies: class names, synonyms, prompt templates and short descriptions.

The text classifier is initialised from these; any list of class names works, and
names missing here fall back to the name itself with the generic templates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TEMPLATES: list[str] = [
    "a photo that evokes {}.",
    "an image that makes people feel {}.",
    "a picture expressing {}.",
    "a photo of a {} scene.",
    "an image full of {}.",
    "a {} photo.",
]

# Each entry: synonyms (the name first) and a few sentences describing what images
# of that emotion tend to show; the sentences feed the optional text pre-training.
_ENTRIES: dict[str, tuple[list[str], list[str]]] = {
    "anger": (
        ["anger", "rage", "fury", "outrage"],
        [
            "A person shouting with clenched fists and a red face.",
            "Protesters confronting police in a heated street clash.",
            "Furrowed brows, narrowed eyes and bared teeth.",
            "A violent scene where someone smashes an object in frustration.",
        ],
    ),
    "disgust": (
        ["disgust", "revulsion", "repulsion", "nausea"],
        [
            "Rotting food covered in mould and flies.",
            "A wrinkled nose and a curled upper lip turned away from a smell.",
            "An overflowing, filthy toilet or a pile of garbage.",
            "Insects crawling over spoiled meat.",
        ],
    ),
    "fear": (
        ["fear", "terror", "dread", "horror"],
        [
            "A dark forest at night with a shadowy figure.",
            "Wide eyes and raised eyebrows with the mouth stretched open.",
            "A huge storm approaching houses on a flat plain.",
            "Someone hiding from a threatening animal baring its fangs.",
        ],
    ),
    "joy": (
        ["joy", "happiness", "delight", "cheerfulness"],
        [
            "Friends laughing together at a sunny beach party.",
            "A wide smile with raised cheeks and crinkled eyes.",
            "Children playing in a field of bright flowers.",
            "A couple celebrating with confetti and balloons.",
        ],
    ),
    "sadness": (
        ["sadness", "sorrow", "grief", "melancholy"],
        [
            "A lonely person sitting in the rain with their head down.",
            "Tears running down a face with downturned lips.",
            "An abandoned, empty house under a grey sky.",
            "Mourners standing beside a grave.",
        ],
    ),
    "surprise": (
        ["surprise", "astonishment", "amazement", "shock"],
        [
            "A person with raised eyebrows and a wide-open mouth.",
            "Someone opening a gift and gasping.",
            "An unexpected, strange sight that makes people stare.",
            "A crowd reacting to a sudden firework burst.",
        ],
    ),
    "neutral": (
        ["neutral", "calm", "indifference", "plainness"],
        [
            "An ordinary street scene with nothing remarkable happening.",
            "A relaxed face with no particular expression.",
            "A plain object photographed on a table.",
            "A quiet office with people working.",
        ],
    ),
    "amusement": (
        ["amusement", "fun", "playfulness", "humour"],
        [
            "A funny dog wearing sunglasses.",
            "Friends laughing at a silly prank.",
            "A clown performing tricks for a giggling audience.",
            "People riding a roller coaster with big grins.",
        ],
    ),
    "awe": (
        ["awe", "wonder", "grandeur", "majesty"],
        [
            "A vast mountain range under a starry sky.",
            "A towering waterfall seen from far below.",
            "The aurora lighting up a frozen landscape.",
            "An enormous cathedral interior with shafts of light.",
        ],
    ),
    "contentment": (
        ["contentment", "serenity", "peacefulness", "satisfaction"],
        [
            "A cat sleeping in a patch of warm sunlight.",
            "A cup of tea beside a book on a quiet afternoon.",
            "A calm lake at sunset with a small boat.",
            "A family relaxing together on a couch.",
        ],
    ),
    "excitement": (
        ["excitement", "thrill", "exhilaration", "enthusiasm"],
        [
            "Fans cheering wildly as their team scores.",
            "A skier leaping off a snowy cliff.",
            "A concert crowd with raised hands and bright lights.",
            "Runners sprinting towards a finish line.",
        ],
    ),
    "happiness": (
        ["happiness", "joy", "gladness", "cheer"],
        [
            "A broad smile showing teeth with raised cheeks.",
            "A laughing face with crinkled eyes.",
            "A person grinning warmly at the camera.",
        ],
    ),
    "contempt": (
        ["contempt", "scorn", "disdain", "sneer"],
        [
            "A one-sided smirk with one lip corner raised.",
            "A face looking down on someone with a sneer.",
            "Rolled eyes and a dismissive half smile.",
        ],
    ),
}


@dataclass
class ClassVocabulary:
    name: str
    synonyms: list[str]
    descriptions: list[str] = field(default_factory=list)


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
        synonyms, descriptions = _ENTRIES[key]
        return ClassVocabulary(name=name, synonyms=list(synonyms), descriptions=list(descriptions))
    readable = key.replace("_", " ")
    return ClassVocabulary(name=name, synonyms=[readable], descriptions=[f"an image that expresses {readable}."])


def vocabulary(classnames: list[str]) -> list[ClassVocabulary]:
    if len(classnames) < 2:
        raise ValueError(f"classnames: need at least 2 classes, got {classnames}")
    if len({c.strip().lower() for c in classnames}) != len(classnames):
        raise ValueError(f"classnames: duplicate class names in {classnames}")
    return [class_vocabulary(c) for c in classnames]
