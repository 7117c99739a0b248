"""The shared text-initialised classifier: cosine logits against learnable class vectors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .vocab import TEMPLATES, ClassVocabulary, vocabulary


@torch.no_grad()
def encode_texts(backbone, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised CLIP text embeddings, [len(texts), E], float32."""
    device = backbone.device
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = backbone.tokenizer(texts[i:i + batch_size]).to(device)
        out.append(F.normalize(backbone.model.encode_text(tokens).float(), dim=-1))
    return torch.cat(out)


@torch.no_grad()
def text_class_embeddings(backbone, vocab: list[ClassVocabulary], templates: list[str] | None = None) -> torch.Tensor:
    """Per class: mean of normalised embeddings over templates × synonyms, renormalised."""
    templates = templates or TEMPLATES
    rows = []
    for entry in vocab:
        texts = [t.format(s) for s in entry.synonyms for t in templates]
        rows.append(F.normalize(encode_texts(backbone, texts).mean(0), dim=-1))
    return torch.stack(rows)


class TextClassifier(nn.Module):
    """``logit_scale · norm(e) · norm(T)ᵀ`` with T initialised from text; one for all stages."""

    def __init__(self, class_embeddings: torch.Tensor, logit_scale: float, trainable: bool = True):
        super().__init__()
        self.weight = nn.Parameter(class_embeddings.detach().clone().float(), requires_grad=trainable)
        # CLIP's temperature is kept fixed: learning it on a few thousand images only
        # sharpens or flattens the distribution and fights the KL term.
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)), persistent=True)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        e = F.normalize(embeddings, dim=-1)
        t = F.normalize(self.weight, dim=-1).to(e.dtype)
        return self.logit_scale.to(e.dtype) * e @ t.t()


def build_classifier(backbone, classnames: list[str], trainable: bool = True,
                     templates: list[str] | None = None) -> TextClassifier:
    vocab = vocabulary(classnames)
    emb = text_class_embeddings(backbone, vocab, templates)
    return TextClassifier(emb, backbone.logit_scale, trainable=trainable)


@dataclass(frozen=True)
class FitRecipe:
    """How stage 1 fits the classifier on fixed embeddings (text or frozen image ones).

    Full batch, AdamW, label-smoothed cross-entropy; at every step Gaussian noise of std
    ``noise_std`` is added to the L2-normalised embeddings, so the classifier learns regions
    around the points rather than the points (text and image embeddings of one class do not
    coincide in CLIP's space). The defaults are LaFTer's.
    """

    steps: int = 500
    lr: float = 5e-4
    weight_decay: float = 0.01
    noise_std: float = 0.1
    label_smoothing: float = 0.1
    seed: int = 0


@dataclass
class FitResult:
    losses: list[float]          # the loss of every step
    accuracy: float              # on the fitted embeddings, without noise
    count: int                   # how many embeddings were fitted


def fit_classifier(classifier: TextClassifier, features: torch.Tensor, labels: torch.Tensor,
                   recipe: FitRecipe = FitRecipe()) -> FitResult:
    """Train ``classifier.weight`` in place on ``features`` [N, E] with class ``labels`` [N]."""
    device = classifier.weight.device
    feats = F.normalize(features.detach().float(), dim=-1).to(device)
    y = labels.to(device=device, dtype=torch.long)
    gen = torch.Generator(device="cpu").manual_seed(recipe.seed)
    weight = classifier.weight
    was = weight.requires_grad
    weight.requires_grad_(True)
    opt = torch.optim.AdamW([weight], lr=recipe.lr, weight_decay=recipe.weight_decay)
    losses = []
    try:
        with torch.enable_grad():
            for _ in range(recipe.steps):
                x = feats
                if recipe.noise_std > 0:
                    x = feats + torch.randn(feats.shape, generator=gen).to(device) * recipe.noise_std
                loss = F.cross_entropy(classifier(x), y, label_smoothing=recipe.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
    finally:
        weight.grad = None
        weight.requires_grad_(was)
    with torch.no_grad():
        accuracy = int((classifier(feats).argmax(-1) == y).sum()) / len(y) if len(y) else float("nan")
    return FitResult(losses=losses, accuracy=accuracy, count=int(len(y)))


def description_texts(classnames: list[str], descriptions: dict[str, list[str]],
                      templates: list[str] | None = None) -> tuple[list[str], list[int]]:
    """The texts stage 1 trains on and their class indices: every class's sentences, then
    the prompt templates filled with its name and synonyms."""
    texts, labels = [], []
    for c, entry in enumerate(vocabulary(classnames)):
        fills = [t.format(s) for s in entry.synonyms for t in (templates or TEMPLATES)]
        for text in [*descriptions[entry.name], *fills]:
            texts.append(text)
            labels.append(c)
    return texts, labels


def pretrain_on_descriptions(classifier: TextClassifier, backbone, classnames: list[str],
                             descriptions: dict[str, list[str]], recipe: FitRecipe = FitRecipe(), *,
                             embed: Callable[[list[str]], torch.Tensor] | None = None) -> FitResult:
    """Stage 1 from text alone: fit the classifier on CLIP text embeddings of sentences per class.

    ``descriptions`` maps every class name to its sentences (see :mod:`cascade.descriptions`);
    templates with the class name join them. Text and image embeddings share CLIP's joint
    space, so a classifier that separates descriptions of each emotion transfers to images
    before any image is seen. ``embed`` turns texts into embeddings (default: encode them
    with ``backbone``; :func:`cascade.text_cache.cached_text_embeddings` reuses earlier ones).
    """
    texts, labels = description_texts(classnames, descriptions)
    feats = embed(texts) if embed is not None else encode_texts(backbone, texts)
    return fit_classifier(classifier, feats, torch.tensor(labels), recipe)


@torch.no_grad()
def class_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per class: the renormalised mean of its L2-normalised embeddings [C, E] (classes with
    no embedding get a zero row)."""
    feats = F.normalize(features.float(), dim=-1)
    out = torch.zeros(num_classes, feats.shape[1])
    out.index_add_(0, labels.long().cpu(), feats.cpu())
    return F.normalize(out, dim=-1)
