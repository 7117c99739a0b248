import json

import pytest

from cascade.descriptions import (SHIPPED, DescriptionsError, load_descriptions, read_descriptions, shipped,
                                  shipped_set_for)
from cascade.vocab import EMOTION6, EMOTION6_NEUTRAL, FERPLUS, MIKELS8


def _json(tmp_path, data, name="d.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2))
    return path


def test_lafter_json_is_read_in_the_runs_class_order(tmp_path):
    path = _json(tmp_path, {"Joy": ["a smile", "  ", "a party"], "anger": ["a shout"]})
    got, source = load_descriptions(["anger", "joy"], path)
    assert list(got) == ["anger", "joy"] and got["joy"] == ["a smile", "a party"]
    assert source == str(path)


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv_with_class_and_sentence_columns(tmp_path, suffix, sep):
    path = tmp_path / f"d{suffix}"
    path.write_text(sep.join(["id", "class", "sentence"]) + "\n"
                    + sep.join(["1", "anger", "a shout"]) + "\n\n"
                    + sep.join(["2", "joy", '"a smile, wide"']) + "\n"
                    + sep.join(["3", "anger", "a fist"]) + "\n")
    got = read_descriptions(path)
    assert got == {"anger": ["a shout", "a fist"], "joy": ["a smile, wide"]}


def test_a_missing_class_is_named(tmp_path):
    path = _json(tmp_path, {"anger": ["a shout"], "joy": ["a smile"]})
    with pytest.raises(DescriptionsError, match=r"no sentences for class\(es\) 'fear'") as exc:
        load_descriptions(["anger", "fear", "joy"], path)
    assert str(path) in str(exc.value)


def test_extra_classes_are_ignored_with_one_note(tmp_path):
    path = _json(tmp_path, {"anger": ["a shout"], "joy": ["a smile"], "awe": ["a canyon"], "calm": ["a lake"]})
    notes = []
    got, _ = load_descriptions(["anger", "joy"], path, note=notes.append)
    assert list(got) == ["anger", "joy"]
    assert len(notes) == 1 and "'awe'" in notes[0] and "'calm'" in notes[0] and "ignoring 2" in notes[0]


def test_an_empty_class_is_an_error(tmp_path):
    path = _json(tmp_path, {"anger": ["a shout"], "joy": []})
    with pytest.raises(DescriptionsError, match=r"'joy' have no sentences"):
        load_descriptions(["anger", "joy"], path)
    csv = tmp_path / "d.csv"
    csv.write_text("class,sentence\nanger,a shout\njoy,\n")
    with pytest.raises(DescriptionsError, match=r"'joy' have no sentences"):
        load_descriptions(["anger", "joy"], csv)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{\n  "anger": ["a shout"],\n  "joy": ["a smile",]\n}\n')
    with pytest.raises(DescriptionsError, match=r"d\.json: not valid JSON at line 3, column"):
        read_descriptions(path)


def test_wrong_json_shapes_are_named(tmp_path):
    with pytest.raises(DescriptionsError, match=r"expected a JSON object"):
        read_descriptions(_json(tmp_path, [["anger", "a shout"]]))
    with pytest.raises(DescriptionsError, match=r"class 'joy' must map to a list of sentences"):
        read_descriptions(_json(tmp_path, {"joy": {"a": 1}}))


def test_malformed_csv_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("class,sentence\nanger,a shout\njoy\n")
    with pytest.raises(DescriptionsError, match=r"d\.csv: line 3: expected 2 columns, got 1"):
        read_descriptions(path)
    path.write_text("label,text\nanger,a shout\n")
    with pytest.raises(DescriptionsError, match=r"line 1: the header lacks the column\(s\) class, sentence"):
        read_descriptions(path)
    path.write_text('class,sentence\nanger,a shout\njoy,"a smile\n')
    with pytest.raises(DescriptionsError, match=r"d\.csv: line \d+: malformed CSV"):
        read_descriptions(path)


def test_missing_file_and_duplicate_names(tmp_path):
    with pytest.raises(DescriptionsError, match="no such descriptions file"):
        read_descriptions(tmp_path / "nope.json")
    path = _json(tmp_path, {"Joy": ["a"], "joy": ["b"]})
    with pytest.raises(DescriptionsError, match="same class"):
        load_descriptions(["joy", "anger"], path)


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_sets_have_25_distinct_sentences_per_class(name):
    sets = shipped(name)
    for cls, sentences in sets.items():
        assert len(set(sentences)) >= 25, (name, cls)
    every = [s for sentences in sets.values() for s in sentences]
    assert len(set(every)) == len(every), f"{name}: a sentence is listed under two classes"


@pytest.mark.parametrize("classes, expected", [
    (EMOTION6, "emotion6+neutral"), (EMOTION6_NEUTRAL, "emotion6+neutral"),
    (MIKELS8, "mikels8"), (FERPLUS, "ferplus"), (["Happiness", "Contempt"], "ferplus"),
])
def test_the_shipped_set_is_chosen_by_the_runs_classes(classes, expected):
    assert shipped_set_for(classes) == expected
    got, source = load_descriptions(classes)
    assert list(got) == classes and source == f"shipped:{expected}"


def test_classes_no_shipped_set_covers_are_named():
    with pytest.raises(DescriptionsError, match=r"no shipped sentences for 'boredom'.*give a descriptions file"):
        load_descriptions(["joy", "boredom"])
    with pytest.raises(DescriptionsError, match="no single shipped set holds all of them"):
        load_descriptions(["awe", "contempt"])
