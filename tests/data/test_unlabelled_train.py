"""A training split without labels (for label-free training), beside labelled val/test."""
import numpy as np
import pytest
from PIL import Image

from cascade.data import DataConfig, load_index
from cascade.data.records import UNLABELLED
from cascade.data.scan_report import DataError
from cascade.data.splits import resolve_splits

CLASSES = ("anger", "joy")


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def manifests(tmp_path):
    for i in range(6):
        _image(tmp_path / "img" / f"{i}.png", i)
    (tmp_path / "train.csv").write_text("path\n" + "".join(f"img/{i}.png\n" for i in range(3)))
    (tmp_path / "val.csv").write_text("path,label\nimg/3.png,anger\n")
    (tmp_path / "test.csv").write_text("path,label\nimg/4.png,joy\nimg/5.png,anger\n")
    return {k: str(tmp_path / f"{k}.csv") for k in ("train", "val", "test")}


def test_a_train_manifest_with_only_a_path_column_gives_unlabelled_items(manifests):
    cfg = {"format": "manifest", "root": manifests}
    idx = load_index(cfg)
    splits = resolve_splits(DataConfig.model_validate(cfg), idx)
    assert idx.classnames == list(CLASSES)
    assert idx.unlabelled(splits["train"]) == 3 and idx.unlabelled(splits["val"] + splits["test"]) == 0
    assert all(idx.records[i].label == UNLABELLED for i in splits["train"])
    assert not idx.distribution(splits["train"][0]).any()          # no target at all
    assert any("3 train item(s) are unlabelled" in w for w in idx.report.warnings)
    assert idx.class_counts() == {"anger": 2, "joy": 1}


def test_only_the_train_file_may_be_unlabelled(manifests, tmp_path):
    (tmp_path / "val.csv").write_text("path\nimg/3.png\n")
    with pytest.raises(DataError, match=r"val.csv: no label column"):
        load_index({"format": "manifest", "root": manifests})


def test_a_single_manifest_without_labels_is_still_an_error(manifests):
    with pytest.raises(DataError, match="no label column and no distribution columns"):
        load_index({"format": "manifest", "root": manifests["train"]})


def test_an_image_folder_without_class_folders_trains_label_free(tmp_path):
    for i in range(3):
        _image(tmp_path / "pool" / f"{i}.png", i)
        _image(tmp_path / "pool" / "more" / f"{i}.jpg", 10 + i)      # nested folders of a flat pool count too
    for split in ("val", "test"):
        for c, name in enumerate(CLASSES):
            _image(tmp_path / split / name / "0.png", 20 + c)
    # A nested folder makes "more" look like a class folder: the pool must be flat at the top.
    idx_cfg = {"format": "imagefolder", "root": {"train": str(tmp_path / "pool"), "val": str(tmp_path / "val"),
                                                 "test": str(tmp_path / "test")}}
    idx = load_index(idx_cfg)
    assert "more" in idx.classnames      # the pool had a folder, so it is read as labelled
    for p in (tmp_path / "pool" / "more").iterdir():
        p.unlink()
    (tmp_path / "pool" / "more").rmdir()
    idx = load_index(idx_cfg)
    assert idx.classnames == list(CLASSES)
    train = [i for i, r in enumerate(idx.records) if r.split == "train"]
    assert len(train) == 3 and idx.unlabelled(train) == 3
    assert sorted(r.split for r in idx.records if r.label != UNLABELLED) == ["test", "test", "val", "val"]
