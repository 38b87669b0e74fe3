"""pipeline.formats: layout lookup, numpy_bitmap reading, ndjson streaming, Google's .bin format."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from pipeline import formats
from pipeline.errors import DataFormatError, QuickDrawError
from pipeline.formats import ReadStats


def _touch(path, data=b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _save_bitmaps(path, rows=5, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, size=(rows, 784), dtype=np.uint8)
    np.save(path, arr)
    return arr


# ---------------------------------------------------------------- layout
def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("QUICKDRAW_DATA", raising=False)
    assert formats.data_root() == formats.Path("data")
    monkeypatch.setenv("QUICKDRAW_DATA", str(tmp_path / "env"))
    assert formats.data_root() == tmp_path / "env"
    assert formats.data_root(str(tmp_path / "cli")) == tmp_path / "cli"


def test_class_file_path_is_bucket_layout_with_spaces(tmp_path):
    assert formats.class_file_path(tmp_path, "numpy_bitmap", "alarm clock") == tmp_path / "numpy_bitmap" / "alarm clock.npy"
    assert formats.class_file_path(tmp_path, "simplified", "cat") == tmp_path / "simplified" / "cat.ndjson"
    assert formats.class_file_path(tmp_path, "raw", "cat") == tmp_path / "raw" / "cat.ndjson"
    assert formats.class_file_path(tmp_path, "binary", "The Eiffel Tower") == tmp_path / "binary" / "The Eiffel Tower.bin"
    with pytest.raises(QuickDrawError, match="unknown data format"):
        formats.class_file_path(tmp_path, "png", "cat")


def test_find_class_file_spaces_underscores_aliases(tmp_path):
    spaced = _touch(tmp_path / "numpy_bitmap" / "alarm clock.npy")
    underscored = _touch(tmp_path / "bitmaps" / "The_Eiffel_Tower.npy")
    ndjson = _touch(tmp_path / "simplified" / "hot_air_balloon.ndjson")
    gz = _touch(tmp_path / "raw" / "cat.ndjson.gz")
    binary = _touch(tmp_path / "binary" / "smiley face.bin")

    assert formats.find_class_file(tmp_path, "numpy_bitmap", "alarm clock") == spaced
    assert formats.find_class_file(tmp_path, "numpy_bitmap", "alarm_clock") == spaced
    assert formats.find_class_file(tmp_path, "numpy_bitmap", "The Eiffel Tower") == underscored
    assert formats.find_class_file(tmp_path, "numpy_bitmap", "the eiffel tower") == underscored  # any case
    assert formats.find_class_file(tmp_path, "simplified", "hot air balloon") == ndjson
    assert formats.find_class_file(tmp_path, "raw", "cat") == gz
    assert formats.find_class_file(tmp_path, "binary", "smiley_face") == binary
    assert formats.find_class_file(tmp_path, "numpy_bitmap", "cat") is None
    assert formats.find_class_file(tmp_path, "simplified", "cat") is None  # raw/ is not simplified/


def test_root_may_be_the_format_folder(tmp_path):
    folder = tmp_path / "my_npys"
    path = _touch(folder / "flip_flops.npy")
    _touch(folder / "house plant.npy")
    _touch(folder / "notes.txt")
    assert formats.find_class_file(folder, "numpy_bitmap", "flip flops") == path
    assert formats.available_classes(folder, "numpy_bitmap") == ["flip flops", "house plant"]
    assert formats.available_classes(folder, "simplified") == []


def test_available_classes_union_with_official_spelling(tmp_path):
    _touch(tmp_path / "numpy_bitmap" / "alarm clock.npy")
    _touch(tmp_path / "bitmaps" / "the_eiffel_tower.npy")
    _touch(tmp_path / "bitmaps" / "alarm_clock.npy")  # same class twice: listed once
    _touch(tmp_path / "simplified" / "cat.ndjson")
    assert formats.available_classes(tmp_path, "numpy_bitmap") == ["The Eiffel Tower", "alarm clock"]
    assert formats.available_classes(tmp_path, "simplified") == ["cat"]
    assert formats.available_classes(tmp_path, "binary") == []


def test_available_classes_of_shared(shared):
    names = formats.available_classes(shared, "numpy_bitmap")
    assert len(names) == 56
    assert {"The Eiffel Tower", "alarm clock", "smiley face", "cat"} <= set(names)
    assert "smiley face" in formats.available_classes(shared, "simplified")


# ---------------------------------------------------------------- numpy_bitmap
def test_read_real_numpy_bitmap_is_memmap(shared_subdir):
    path = formats.find_class_file(shared_subdir("bitmaps").parent, "numpy_bitmap", "alarm clock")
    rows = formats.read_numpy_bitmap(path)
    assert isinstance(rows, np.memmap)
    assert rows.dtype == np.uint8 and rows.shape == (3401, 784)
    assert rows.max() == 255 and rows.min() == 0
    first = formats.read_numpy_bitmap(path, limit=10)
    assert isinstance(first, np.memmap) and first.shape == (10, 784)
    np.testing.assert_array_equal(first, np.load(path)[:10])


def test_read_numpy_bitmap_synthetic_round_trip(tmp_path):
    arr = _save_bitmaps(tmp_path / "cat.npy", rows=7)
    rows = formats.read_numpy_bitmap(tmp_path / "cat.npy")
    np.testing.assert_array_equal(rows, arr)
    assert formats.read_numpy_bitmap(tmp_path / "cat.npy", limit=100).shape == (7, 784)


def test_corrupt_header(tmp_path):
    path = _touch(tmp_path / "cat.npy", b"this is not a numpy file at all" * 10)
    with pytest.raises(DataFormatError, match=r"cat\.npy.*not a valid \.npy"):
        formats.read_numpy_bitmap(path)
    # Valid magic, garbage header dict.
    good = tmp_path / "good.npy"
    _save_bitmaps(good)
    data = bytearray(good.read_bytes())
    data[12:30] = b"{'descr': <<garbage"
    bad = _touch(tmp_path / "dog.npy", bytes(data))
    with pytest.raises(DataFormatError, match=r"dog\.npy"):
        formats.read_numpy_bitmap(bad)
    # Cut inside the header.
    short = _touch(tmp_path / "fish.npy", good.read_bytes()[:40])
    with pytest.raises(DataFormatError, match=r"fish\.npy"):
        formats.read_numpy_bitmap(short)
    empty = _touch(tmp_path / "bee.npy", b"")
    with pytest.raises(DataFormatError, match=r"bee\.npy"):
        formats.read_numpy_bitmap(empty)


def test_truncated_data_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "cat.npy"
    _save_bitmaps(path, rows=10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 784 * 3 - 100])
    with pytest.raises(DataFormatError, match=r"cat\.npy is truncated.*10 rows"):
        formats.read_numpy_bitmap(path)


def test_wrong_dtype(tmp_path):
    path = tmp_path / "cat.npy"
    np.save(path, np.zeros((4, 784), dtype=np.float32))
    with pytest.raises(DataFormatError, match=r"cat\.npy has dtype float32.*uint8"):
        formats.read_numpy_bitmap(path)


def test_wrong_shape(tmp_path):
    path = tmp_path / "cat.npy"
    np.save(path, np.zeros((4, 28, 28), dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"cat\.npy has shape \(4, 28, 28\).*reshape"):
        formats.read_numpy_bitmap(path)
    np.save(path, np.zeros((4, 100), dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"\(N, 784\)"):
        formats.read_numpy_bitmap(path)


def test_object_array_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "cat.npy"
    np.save(path, np.array([{"a": 1}, [1, 2]], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"cat\.npy holds Python objects"):
        formats.read_numpy_bitmap(path)


def test_data_format_error_is_a_value_error(tmp_path):
    path = _touch(tmp_path / "cat.npy", b"junk")
    with pytest.raises(ValueError):
        formats.read_numpy_bitmap(path)


# ---------------------------------------------------------------- ndjson
GOOD = {"word": "cat", "countrycode": "US", "timestamp": "2017-03-02 23:25:10.07453 UTC", "recognized": True,
        "key_id": "5201136883597312", "drawing": [[[0, 10, 20], [5, 6, 7]], [[1, 2], [3, 4]]]}


def _ndjson(path, lines):
    with open(path, "wb") as fh:
        for line in lines:
            fh.write(line if isinstance(line, bytes) else (json.dumps(line) + "\n").encode())
    return path


def test_iter_ndjson_skips_and_counts_garbage(tmp_path):
    raw_good = dict(GOOD, drawing=[[[1.5, 2.25], [3.0, 4.0], [0, 17]]])
    not_recognized = dict(GOOD, recognized=False)
    lines = [
        GOOD,
        b"\x00\xff\xfe\x93binary junk\x01\x02\n",
        b'{"word": "cat", "drawing": [[[1, 2], [3\n',  # half a line
        {},
        {"word": "cat"},
        dict(GOOD, drawing=[[["NaN", "1"], ["2", "3"]]]),  # numbers as strings
        b'{"word": "cat", "drawing": [[[NaN, 1], [2, 3]]]}\n',  # a real NaN
        b'{"word": "cat", "drawing": [[[Infinity, 1], [2, 3]]]}\n',
        dict(GOOD, drawing=[[[1, 2, 3], [4, 5]]]),  # unequal lengths
        b'{"word": "cat", "drawing": [[[1' + b"0" * 400 + b', 1], [2, 3]]]}\n',  # too big for a float
        dict(GOOD, drawing=[[[1, 2]]]),  # one list per stroke
        dict(GOOD, drawing=[]),
        dict(GOOD, drawing="[[1,2],[3,4]]"),
        [1, 2, 3],
        b"\n",  # blank lines are not records and not errors
        raw_good,
        not_recognized,
        b'{"word": "cat", "recognized": true, "drawing": [[[1, 2], [3, 4]]]}',  # last line, no newline
    ]
    path = _ndjson(tmp_path / "cat.ndjson", lines)
    stats = ReadStats()
    records = list(formats.iter_ndjson(path, stats=stats))
    assert [r["drawing"] for r in records] == [GOOD["drawing"], raw_good["drawing"], not_recognized["drawing"],
                                                [[[1, 2], [3, 4]]]]
    assert stats.read == 4 and stats.skipped == 13 and stats.filtered == 0


def test_iter_ndjson_recognized_filter_and_limit(tmp_path):
    lines = [dict(GOOD, key_id=str(i), recognized=(i % 3 != 0)) for i in range(30)] + [dict(GOOD, recognized=None)]
    path = _ndjson(tmp_path / "cat.ndjson", lines)
    stats = ReadStats()
    yes = list(formats.iter_ndjson(path, recognized=True, stats=stats))
    assert len(yes) == 20 and all(r["recognized"] is True for r in yes)
    assert stats.filtered == 11 and stats.read == 20
    no = list(formats.iter_ndjson(path, recognized=False))
    assert [r["key_id"] for r in no] == [str(i) for i in range(0, 30, 3)]
    assert [r["key_id"] for r in formats.iter_ndjson(path, limit=4)] == ["0", "1", "2", "3"]
    assert [r["key_id"] for r in formats.iter_ndjson(path, recognized=True, limit=3)] == ["1", "2", "4"]
    assert list(formats.iter_ndjson(path, limit=0)) == []


def test_iter_ndjson_gzip(tmp_path):
    import gzip

    path = tmp_path / "cat.ndjson.gz"
    with gzip.open(path, "wb") as fh:
        fh.write((json.dumps(GOOD) + "\nnot json\n").encode())
    stats = ReadStats()
    assert [r["key_id"] for r in formats.iter_ndjson(path, stats=stats)] == [GOOD["key_id"]]
    assert stats.skipped == 1


def test_iter_ndjson_real_simplified_and_raw(shared):
    stats = ReadStats()
    simplified = list(formats.iter_drawings(shared, "simplified", "smiley face", stats=stats))
    assert len(simplified) == 1997 and stats.skipped == 0
    assert all(r["word"] == "smiley face" for r in simplified)
    raw = list(formats.iter_drawings(shared, "raw", "cat", limit=5))
    assert len(raw) == 5 and all(len(stroke) == 3 for r in raw for stroke in r["drawing"])


def test_iter_drawings_missing_class_names_the_fix(tmp_path):
    with pytest.raises(QuickDrawError, match=r"no simplified file for 'cat'.*pipeline download"):
        list(formats.iter_drawings(tmp_path, "simplified", "cat"))
    with pytest.raises(QuickDrawError, match="read_numpy_bitmap"):
        list(formats.iter_drawings(tmp_path, "numpy_bitmap", "cat"))


# ---------------------------------------------------------------- binary
def test_binary_round_trip_real_drawings(shared, tmp_path):
    records = list(formats.iter_ndjson(shared / "simplified" / "snowman.ndjson", limit=500))
    assert len(records) == 500
    path = tmp_path / "binary" / "snowman.bin"
    assert formats.write_binary(records, path) == 500
    back = list(formats.iter_drawings(tmp_path, "binary", "snowman"))
    assert len(back) == 500
    for original, got in zip(records, back, strict=True):
        assert got["drawing"] == original["drawing"]
        assert got["countrycode"] == original["countrycode"]
        assert got["recognized"] == bool(original["recognized"])
        assert got["key_id"] == original["key_id"]  # null in this set: written 0, read back None
        assert got["timestamp"] == original["timestamp"]
        assert got["word"] == "snowman"
    # Byte size follows the spec exactly: 17-byte head, per stroke 2 + 2n bytes.
    expected = sum(17 + sum(2 + 2 * len(s[0]) for s in r["drawing"]) for r in records)
    assert path.stat().st_size == expected


def test_binary_fields_follow_the_spec(tmp_path):
    path = tmp_path / "cat.bin"
    formats.write_binary([GOOD], path)
    data = path.read_bytes()
    key_id, country, recognized, timestamp, n_strokes = struct.unpack_from("<Q2sBIH", data)
    assert (key_id, country, recognized, n_strokes) == (5201136883597312, b"US", 1, 2)
    assert timestamp == 1488497110  # 2017-03-02 23:25:10 UTC
    assert struct.unpack_from("<H", data, 17) == (3,)
    assert data[19:25] == bytes([0, 10, 20, 5, 6, 7])
    (record,) = formats.iter_binary(path)
    assert record == {"key_id": "5201136883597312", "countrycode": "US", "recognized": True,
                      "timestamp": 1488497110, "drawing": GOOD["drawing"]}


def test_binary_filter_limit_and_truncation(tmp_path):
    records = [dict(GOOD, key_id=str(i + 1), recognized=i % 2 == 0) for i in range(10)]
    path = tmp_path / "cat.bin"
    formats.write_binary(records, path)
    assert [r["key_id"] for r in formats.iter_binary(path, recognized=False)] == ["2", "4", "6", "8", "10"]
    assert [r["key_id"] for r in formats.iter_binary(path, limit=3)] == ["1", "2", "3"]
    data = path.read_bytes()
    record_size = len(data) // 10  # all ten records have the same drawing
    # Cut the last record inside its head, its first stroke's point count, its points, its last byte.
    for keep in (3, 17 + 1, 17 + 2 + 4, record_size - 1):
        truncated = tmp_path / f"cut{keep}.bin"
        truncated.write_bytes(data[: 9 * record_size + keep])
        stats = ReadStats()
        got = list(formats.iter_binary(truncated, stats=stats))
        assert [r["key_id"] for r in got] == [str(i + 1) for i in range(9)], keep
        assert stats.skipped == 1 and stats.read == 9
    assert list(formats.iter_binary(_touch(tmp_path / "empty.bin"))) == []


def test_binary_end_finds_record_boundaries(tmp_path):
    path = tmp_path / "cat.bin"
    formats.write_binary([GOOD, GOOD], path)
    data = path.read_bytes()
    first = formats.binary_record_end(data, 0)
    assert first == len(data) // 2
    assert formats.binary_record_end(data, first) == len(data)
    assert formats.binary_record_end(data[:-1], first) is None


def test_write_binary_accepts_integral_floats(tmp_path):
    path = tmp_path / "cat.bin"
    formats.write_binary([dict(GOOD, drawing=[[[0.0, 255.0], [3.0, 4]]])], path)
    assert next(formats.iter_binary(path))["drawing"] == [[[0, 255], [3, 4]]]


def test_write_binary_refuses_raw_drawings_and_keeps_old_file(tmp_path):
    path = tmp_path / "cat.bin"
    formats.write_binary([GOOD], path)
    before = path.read_bytes()
    raw = dict(GOOD, drawing=[[[1.5, 300.0], [2.0, 3.0]]])
    with pytest.raises(DataFormatError, match="simplified drawings only"):
        formats.write_binary([GOOD, raw], path)
    with_time = dict(GOOD, drawing=[[[1, 2], [3, 4], [0, 10]]])
    with pytest.raises(DataFormatError, match="simplify them first"):
        formats.write_binary([with_time], path)
    with pytest.raises(DataFormatError, match="countrycode"):
        formats.write_binary([dict(GOOD, countrycode="USA")], path)
    assert path.read_bytes() == before  # atomic: a failed write leaves the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.bin"]
