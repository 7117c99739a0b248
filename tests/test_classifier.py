import torch

from cascade.classifier import build_classifier, pretrain_on_descriptions, text_class_embeddings
from cascade.vocab import EMOTION6, FERPLUS, MIKELS8, class_vocabulary, vocabulary


def test_vocabularies_complete():
    for names in (EMOTION6 + ["neutral"], MIKELS8, FERPLUS):
        for entry in vocabulary(names):
            assert entry.synonyms[0] == entry.name
            assert len(entry.synonyms) >= 3 and len(entry.descriptions) >= 3


def test_unknown_names_fall_back():
    entry = class_vocabulary("Serene_Lake")
    assert entry.synonyms == ["serene lake"]


def test_classifier_is_text_mean(tiny_backbone):
    clf = build_classifier(tiny_backbone, ["joy", "anger"])
    emb = text_class_embeddings(tiny_backbone, vocabulary(["joy", "anger"]))
    assert torch.allclose(clf.weight, emb)
    assert torch.allclose(clf.weight.norm(dim=-1), torch.ones(2), atol=1e-5)
    e = torch.randn(3, tiny_backbone.info.embed_dim)
    logits = clf(e)
    cos = torch.nn.functional.normalize(e, dim=-1) @ emb.t()
    assert torch.allclose(logits, tiny_backbone.logit_scale * cos, atol=1e-5)
    assert clf.weight.requires_grad


def test_text_pretraining_lowers_loss(tiny_backbone):
    clf = build_classifier(tiny_backbone, EMOTION6)
    losses = pretrain_on_descriptions(clf, tiny_backbone, EMOTION6, steps=30, lr=1e-2)
    assert losses[-1] < losses[0]
