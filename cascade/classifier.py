"""The shared text-initialised classifier: cosine logits against learnable class vectors."""
from __future__ import annotations

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


def pretrain_on_descriptions(classifier: TextClassifier, backbone, classnames: list[str], *,
                             steps: int = 200, lr: float = 1e-3, seed: int = 0) -> list[float]:
    """LaFTer-style text-only pre-training: fit the classifier on sentence embeddings.

    Text and image embeddings share CLIP's joint space, so a classifier that separates
    descriptions of each emotion transfers to images before any image is seen.
    Returns the loss per step.
    """
    vocab = vocabulary(classnames)
    texts, labels = [], []
    for c, entry in enumerate(vocab):
        for sentence in entry.descriptions:
            texts.append(sentence)
            labels.append(c)
        for syn in entry.synonyms:
            for t in TEMPLATES:
                texts.append(t.format(syn))
                labels.append(c)
    feats = encode_texts(backbone, texts).to(classifier.weight.device)
    y = torch.tensor(labels, device=feats.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.AdamW([classifier.weight], lr=lr, weight_decay=0.0)
    losses = []
    was = classifier.weight.requires_grad
    classifier.weight.requires_grad_(True)
    for _ in range(steps):
        # A little Gaussian noise keeps the classifier from overfitting the exact text points.
        noise = torch.randn(feats.shape, generator=gen).to(feats.device) * 0.01
        loss = F.cross_entropy(classifier(feats + noise), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    classifier.weight.requires_grad_(was)
    return losses
