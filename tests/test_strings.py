"""Packed strings (UTF-8 bytes + offsets): what the query path reads texts and words from."""

import numpy as np
import pyarrow as pa
import pytest

from glovefaiss.text.packed import PackedStrings, PackedStringsWriter

TEXTS = ["the cat", "", "猫が好き 🐈‍⬛", None, "e\u0301te\u0301", "x" * 1000, "last"]


@pytest.mark.parametrize("large", [False, True])
def test_written_in_slices_reads_back(tmp_path, large):
    arr = pa.array(TEXTS, pa.large_string() if large else pa.string())
    w = PackedStringsWriter(tmp_path / "t.bin", tmp_path / "t.npy")
    # Sliced arrays start inside their buffers: offsets must be rebased.
    for a, b in ((0, 2), (2, 3), (3, 3), (3, 7)):
        w.append(arr.slice(a, b - a))
    w.close()
    packed = PackedStrings.open(tmp_path / "t.bin", tmp_path / "t.npy")
    want = [t or "" for t in TEXTS]  # a null text reads as empty
    assert len(packed) == len(TEXTS)
    assert [packed[i] for i in range(len(packed))] == want
    assert packed.take(np.array([6, 0, 2])) == [want[6], want[0], want[2]]
    assert packed.to_arrow().to_pylist() == want
    assert PackedStrings.from_arrow(arr.slice(2, 3)).take(range(3)) == want[2:5]


def test_empty_and_mismatched_files(tmp_path):
    w = PackedStringsWriter(tmp_path / "e.bin", tmp_path / "e.npy")
    w.append(pa.array(["", ""]))
    w.close()
    assert PackedStrings.open(tmp_path / "e.bin", tmp_path / "e.npy").take([0, 1]) == ["", ""]
    w = PackedStringsWriter(tmp_path / "t.bin", tmp_path / "t.npy")
    w.append(pa.array(["abc", "de"]))
    w.close()
    (tmp_path / "t.bin").write_bytes(b"abcd")
    with pytest.raises(ValueError, match="has 4 bytes but its offsets end at 5"):
        PackedStrings.open(tmp_path / "t.bin", tmp_path / "t.npy")
