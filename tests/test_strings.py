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
    want = [t or "" for t in TEXTS]  # a null text reads as empty
    for populate in (False, True):  # mapped lazily, or with its page tables filled at open
        packed = PackedStrings.open(tmp_path / "t.bin", tmp_path / "t.npy", populate=populate)
        assert len(packed) == len(TEXTS)
        assert [packed[i] for i in range(len(packed))] == want
        assert packed.take(np.array([6, 0, 2])) == [want[6], want[0], want[2]]
        assert packed.to_arrow().to_pylist() == want
        assert not packed.data.flags.writeable
    assert PackedStrings.from_arrow(arr.slice(2, 3)).take(range(3)) == want[2:5]


def test_empty_and_mismatched_files(tmp_path):
    w = PackedStringsWriter(tmp_path / "e.bin", tmp_path / "e.npy")
    w.append(pa.array(["", ""]))
    w.close()
    assert PackedStrings.open(tmp_path / "e.bin", tmp_path / "e.npy").take([0, 1]) == ["", ""]
    assert PackedStrings.open(tmp_path / "e.bin", tmp_path / "e.npy", populate=True).take([0, 1]) == ["", ""]
    w = PackedStringsWriter(tmp_path / "t.bin", tmp_path / "t.npy")
    w.append(pa.array(["abc", "de"]))
    w.close()
    (tmp_path / "t.bin").write_bytes(b"abcd")
    with pytest.raises(ValueError, match="has 4 bytes but its offsets end at 5"):
        PackedStrings.open(tmp_path / "t.bin", tmp_path / "t.npy")


def test_populate_maps_every_page_at_open(tmp_path):
    # What Index.load(mmap=False) relies on: no hit's text waits on a first-touch page fault.
    import subprocess
    import sys

    w = PackedStringsWriter(tmp_path / "big.bin", tmp_path / "big.npy")
    w.append(pa.array(["x" * 1000] * 20_000))  # 20 MB
    w.close()
    code = (
        "import sys\n"
        "from glovefaiss.text.packed import PackedStrings\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "before = rss()\n"
        "p = PackedStrings.open(sys.argv[1], sys.argv[2], populate=sys.argv[3] == '1')\n"
        "print(rss() - before)\n"
    )
    grown = {m: int(subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.bin"), str(tmp_path / "big.npy"), m],
                                   capture_output=True, text=True, check=True).stdout) for m in ("0", "1")}
    assert grown["1"] > 0.9 * 20_000_000, grown
    assert grown["0"] < 0.1 * 20_000_000, grown


def test_strings_are_a_sequence_that_ends():
    p = PackedStrings.from_arrow(pa.array(["a", "bc", "", "é"]))
    assert list(p) == ["a", "bc", "", "é"] and "bc" in p
    for i in (4, -1):
        with pytest.raises(IndexError):
            p[i]
