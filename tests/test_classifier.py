import torch


from cascade.classifier import (FitRecipe, build_classifier, class_prototypes, description_texts, encode_texts,
                                fit_classifier, pretrain_on_descriptions, text_class_embeddings)
from cascade.descriptions import load_descriptions
from cascade.text_cache import cache_key, cached_text_embeddings, model_identity
from cascade.vocab import EMOTION6, FERPLUS, MIKELS8, TEMPLATES, class_vocabulary, vocabulary


def test_vocabularies_complete():
    for names in (EMOTION6 + ["neutral"], MIKELS8, FERPLUS):
        for entry in vocabulary(names):
            assert entry.synonyms[0] == entry.name
            assert len(entry.synonyms) >= 3


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


def test_text_pretraining_learns_the_sentences(tiny_backbone):
    descriptions, _ = load_descriptions(EMOTION6)
    clf = build_classifier(tiny_backbone, EMOTION6)
    before = clf.weight.detach().clone()
    fit = pretrain_on_descriptions(clf, tiny_backbone, EMOTION6, descriptions,
                                   FitRecipe(steps=60, lr=1e-2, noise_std=0.0))
    assert len(fit.losses) == 60 and fit.losses[-1] < fit.losses[0]
    texts, labels = description_texts(EMOTION6, descriptions)
    assert fit.count == len(texts) == sum(len(v) for v in descriptions.values()) + 6 * 4 * len(TEMPLATES)
    with torch.no_grad():
        acc_before = (torch.nn.functional.normalize(encode_texts(tiny_backbone, texts), dim=-1) @ before.t()
                      ).argmax(-1).eq(torch.tensor(labels)).float().mean()
    assert fit.accuracy > acc_before
    assert not clf.weight.requires_grad or clf.weight.grad is None


def test_fit_follows_the_recipe_seed_and_noise():
    torch.manual_seed(0)
    feats, labels = torch.randn(40, 16), torch.arange(40) % 4

    def fit(**kw):
        from cascade.classifier import TextClassifier
        clf = TextClassifier(torch.nn.functional.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(1)),
                                                           dim=-1), logit_scale=10.0)
        return clf, fit_classifier(clf, feats, labels, FitRecipe(steps=20, lr=1e-2, **kw))

    a, b, c = fit(seed=3), fit(seed=3), fit(seed=4)
    assert torch.equal(a[0].weight, b[0].weight) and a[1].losses == b[1].losses
    assert not torch.equal(a[0].weight, c[0].weight)            # the seed draws the noise
    quiet, _ = fit(seed=3, noise_std=0.0)
    quiet2, _ = fit(seed=4, noise_std=0.0)
    assert torch.equal(quiet.weight, quiet2.weight)            # no noise: nothing random left
    smooth = fit(seed=3, noise_std=0.0, label_smoothing=0.5)[1].losses[-1]
    assert smooth > fit(seed=3, noise_std=0.0)[1].losses[-1]


def test_class_prototypes_are_normalised_class_means():
    feats = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [4.0, 0.0]])
    protos = class_prototypes(feats, torch.tensor([0, 1, 1, 0]), 3)
    assert torch.allclose(protos[0], torch.tensor([1.0, 0.0]))
    expected = torch.nn.functional.normalize(torch.tensor([0.0, 1.0]) + torch.tensor([1.0, 1.0]) / 2 ** 0.5, dim=0)
    assert torch.allclose(protos[1], expected) and torch.equal(protos[2], torch.zeros(2))


def test_text_cache_key_follows_the_sentences_not_a_name(tiny_backbone):
    identity = model_identity(tiny_backbone)
    texts = ["a face red with rage", "a wide smile"]
    key = cache_key(identity, texts)
    assert cache_key(identity, list(texts)) == key
    assert cache_key(identity, ["a face red with rage", "a wide smile!"]) != key      # one sentence edited
    assert cache_key(identity, texts[::-1]) != key
    assert cache_key({**identity, "seed": 1}, texts) != key                               # another model


def test_text_cache_serves_and_refreshes(tiny_backbone, tmp_path):
    texts = ["a face red with rage", "a wide smile"]
    first = cached_text_embeddings(tiny_backbone, texts, tmp_path)
    assert torch.allclose(first, encode_texts(tiny_backbone, texts).cpu())
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    again = cached_text_embeddings(tiny_backbone, texts, tmp_path)
    assert torch.equal(again, first) and list(tmp_path.glob("*.safetensors")) == files
    edited = cached_text_embeddings(tiny_backbone, [texts[0], "a wide, happy smile"], tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert torch.equal(edited[0], first[0]) and not torch.allclose(edited[1], first[1])
    files[0].write_bytes(b"damaged")
    assert torch.equal(cached_text_embeddings(tiny_backbone, texts, tmp_path), first)
