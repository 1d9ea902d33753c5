"""The row reader (Parquet, JSONL, plain text), the BEIR reader (corpus, queries, qrels in three
layouts, splits) and the scored-pairs reader, as every caller sees them."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glovefaiss.errors import DataError, QueryError
from glovefaiss.io import beir
from glovefaiss.io.rows import read_queries, read_rows, read_texts
from glovefaiss.io.scored import read_scored


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_read_rows_formats(tmp_path):
    rows = [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.data")  # Parquet by its magic, whatever the name
    assert read_rows(tmp_path / "r.data") == rows
    (tmp_path / "r.jsonl").write_text('{"id": 1, "text": "a"}\n\n{"id": 2, "text": "b"}\n')
    assert read_rows(tmp_path / "r.jsonl") == rows
    (tmp_path / "r.txt").write_text("first\n\n  \nsecond\n")
    assert read_rows(tmp_path / "r.txt", lines=True) == [{"id": 1, "text": "first"}, {"id": 4, "text": "second"}]
    with pytest.raises(DataError, match=r"r.txt:1: not valid JSON"):  # without lines, not JSONL is an error
        read_rows(tmp_path / "r.txt")
    (tmp_path / "list.jsonl").write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"list.jsonl:2: each line must be a JSON object$"):
        read_rows(tmp_path / "list.jsonl")
    with pytest.raises(DataError, match=r"^file not found: .*nope.jsonl$"):
        read_rows(tmp_path / "nope.jsonl")


def test_csv_and_tsv_query_files_are_read_by_their_header(tmp_path):
    (tmp_path / "q.csv").write_text('id,text\n1,interest rates\n2,"the cat, the mat"\n')
    assert read_queries(tmp_path / "q.csv") == ([1, 2], ["interest rates", "the cat, the mat"])  # not 3 text lines
    (tmp_path / "q.tsv").write_text("_id\ttext\nq1\t42\n")
    assert read_queries(tmp_path / "q.tsv") == (["q1"], ["42"])  # a number-like text stays text
    (tmp_path / "cols.csv").write_text("q,body\n1,cat\n")
    with pytest.raises(QueryError, match=r"cols.csv has no 'id' or '_id' column; columns present: q, body; "
                                         r"query files need 'id' \(or '_id'\) and 'text'; a .csv or .tsv query file "
                                         r"needs a header row naming id and text"):
        read_queries(tmp_path / "cols.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(QueryError, match=r"empty.csv has no queries$"):
        read_queries(tmp_path / "empty.csv")
    (tmp_path / "ragged.csv").write_text("id,text\n1,a,b\n")
    with pytest.raises(QueryError, match=r"ragged.csv:2: more fields than the header's 2; quote texts that hold a "
                                         r"comma$"):
        read_queries(tmp_path / "ragged.csv")
    # Values stay strings; ids become ints only when every one is written as an int.
    (tmp_path / "typed.csv").write_text('id,text\n007,2024-01-01\n8,1e3\n')
    assert read_queries(tmp_path / "typed.csv") == (["007", "8"], ["2024-01-01", "1e3"])
    (tmp_path / "noid.csv").write_text("id,text\n1,a\n,b\n")
    with pytest.raises(QueryError, match=r"noid.csv: row 2 has no 'id'$"):
        read_queries(tmp_path / "noid.csv")
    (tmp_path / "nl.csv").write_text('id,text\n1,"two\nlines, one query"\n')
    assert read_queries(tmp_path / "nl.csv") == ([1], ["two\nlines, one query"])
    (tmp_path / "quotes.tsv").write_text('id\ttext\n1\t"quoted" start\n')  # TSV: quotes are text
    assert read_queries(tmp_path / "quotes.tsv") == ([1], ['"quoted" start'])
    (tmp_path / "lines.csv").write_text("interest rates\nthe bank\n")  # a headerless file of queries
    with pytest.raises(QueryError) as e:
        read_queries(tmp_path / "lines.csv")
    assert str(e.value).endswith("query files need 'id' (or '_id') and 'text'; a .csv or .tsv query file needs a "
                                 "header row naming id and text (a file of one query a line: name it .txt)")


def test_read_texts_id_columns_and_titles(tmp_path):
    p = _jsonl(tmp_path / "c.jsonl", [{"_id": "d1", "title": " Cats ", "text": "purr. "},
                                      {"_id": "d2", "title": "", "text": "Stocks fell."},
                                      {"_id": 3, "text": None}])
    assert read_texts(p) == (["d1", "d2", 3], ["purr. ", "Stocks fell.", ""])
    assert read_texts(p, title=True)[1] == ["Cats purr.", "Stocks fell.", ""]
    with pytest.raises(DataError, match=r"x.jsonl has no 'id' or '_id' column; columns present: key, text$"):
        read_texts(_jsonl(tmp_path / "x.jsonl", [{"key": 1, "text": "a"}]))
    with pytest.raises(DataError, match=r"y.jsonl: row 2 has no 'id'$"):
        read_texts(_jsonl(tmp_path / "y.jsonl", [{"id": 1, "text": "a"}, {"text": "b"}]))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"empty.jsonl has no rows$"):
        read_texts(tmp_path / "empty.jsonl")


def test_read_queries_errors_are_query_errors(tmp_path):
    (tmp_path / "q.txt").write_text("cat\n\ndog\n")
    assert read_queries(tmp_path / "q.txt") == ([1, 3], ["cat", "dog"])
    assert read_queries(_jsonl(tmp_path / "b.jsonl", [{"_id": "q1", "text": "x"}])) == (["q1"], ["x"])
    with pytest.raises(QueryError, match=r"^query file not found: "):
        read_queries(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(QueryError, match=r"blank.txt has no queries$"):
        read_queries(tmp_path / "blank.txt")
    (tmp_path / "bad.jsonl").write_text("{nope\n")
    with pytest.raises(QueryError, match=r"bad.jsonl:1: not valid JSON \("):
        read_queries(tmp_path / "bad.jsonl")
    with pytest.raises(QueryError, match=r"has no 'text' column; columns present: id, body; "
                                         r"query files need 'id' \(or '_id'\) and 'text'$"):
        read_queries(_jsonl(tmp_path / "t.jsonl", [{"id": 1, "body": "x"}]))
    # A .parquet name on a file that is not Parquet is an error, not a text file of queries.
    (tmp_path / "np.parquet").write_text("hello\n")
    with pytest.raises(QueryError) as e:
        read_queries(tmp_path / "np.parquet")
    assert str(e.value) == (f"{tmp_path / 'np.parquet'} is not a readable Parquet file (it does not start with PAR1); "
                            "give a Parquet file, or name a text or JSONL file .txt or .jsonl")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(QueryError) as e:
        read_queries(tmp_path / "bin.txt")
    assert str(e.value) == (f"{tmp_path / 'bin.txt'} is neither Parquet nor UTF-8 text (invalid start byte at byte 0); "
                            "give a Parquet, JSONL or text file")


def test_read_qrels_formats(tmp_path):
    (tmp_path / "q.tsv").write_text("query-id\tcorpus-id\tscore\n1\t10\t1\n1\t11\t2\n2\t10\t0\n")
    assert beir.read_qrels(tmp_path / "q.tsv") == {"1": {"10": 1, "11": 2}, "2": {"10": 0}}
    (tmp_path / "trec.txt").write_text("1 0 10 1\n".replace(" ", "\t"))
    assert beir.read_qrels(tmp_path / "trec.txt") == {"1": {"10": 1}}
    (tmp_path / "trec-spaces.txt").write_text("1 Q0 10 1\r\n1 Q0 12 0\r\n")  # trec_eval's own layout
    assert beir.read_qrels(tmp_path / "trec-spaces.txt") == {"1": {"10": 1, "12": 0}}
    pq.write_table(pa.table({"query-id": [1], "corpus-id": ["d"], "score": [1]}), tmp_path / "q.parquet")
    assert beir.read_qrels(tmp_path / "q.parquet") == {"1": {"d": 1}}
    _jsonl(tmp_path / "q.jsonl", [{"qid": "a", "doc_id": "b", "relevance": 2}])
    assert beir.read_qrels(tmp_path / "q.jsonl") == {"a": {"b": 2}}
    (tmp_path / "bad.tsv").write_text("1\t10\n")
    with pytest.raises(DataError, match="want 3 tab-separated fields"):
        beir.read_qrels(tmp_path / "bad.tsv")
    (tmp_path / "nan.tsv").write_text("query-id\tcorpus-id\tscore\n1\t10\thigh\n")
    with pytest.raises(DataError, match=r"nan.tsv:2: score 'high' is not a number$"):
        beir.read_qrels(tmp_path / "nan.tsv")


def test_judgments_keep_file_order_and_fractions(tmp_path):
    (tmp_path / "q.tsv").write_text("query-id\tcorpus-id\tscore\nb\t1\t1\na\t2\t0.5\nb\t3\t1\n")
    got = [(j.query_id, j.doc_id, j.score) for j in beir.judgments(tmp_path / "q.tsv")]
    assert got == [("b", "1", 1.0), ("a", "2", 0.5), ("b", "3", 1.0)]
    assert next(beir.judgments(tmp_path / "q.tsv")).where.endswith("q.tsv:2")


def test_beir_directory_files_and_splits(tmp_path):
    d = tmp_path / "set"
    (d / "qrels").mkdir(parents=True)
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    (d / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n")
    assert beir.splits(d) == ["dev", "test"] and beir.splits(tmp_path) == []
    assert beir.qrels_file(d, "dev") == d / "qrels" / "dev.tsv"
    with pytest.raises(DataError, match=r"set is not a BEIR directory with a 'train' split \(qrels/train.tsv missing; "
                                        r"splits present: dev, test\)$"):
        beir.qrels_file(d, "train")
    with pytest.raises(DataError, match=r"nope is not a directory; a BEIR data set has corpus.jsonl"):
        beir.qrels_file(tmp_path / "nope", "test")
    _jsonl(d / "corpus.jsonl", [{"_id": 7, "title": "T", "text": "x"}])
    assert beir.read_corpus(d / "corpus.jsonl") == (["7"], ["T x"])


def test_read_scored_formats(tmp_path):
    (tmp_path / "a.csv").write_text("x,y,1.5\n")
    assert read_scored(tmp_path / "a.csv")[2].tolist() == [1.5]
    _jsonl(tmp_path / "a.jsonl", [{"score": 2, "sentence2": "b", "sentence1": "a"}])
    a, b, s = read_scored(tmp_path / "a.jsonl")
    assert (a, b, s.tolist()) == (["a"], ["b"], [2.0])
    pq.write_table(pa.table({"s1": ["p"], "s2": [None], "gold": [3.0]}), tmp_path / "u.parquet")  # first three
    a, b, s = read_scored(tmp_path / "u.parquet")
    assert (a, b, s.tolist()) == (["p"], [""], [3.0])
    pq.write_table(pa.table({"sentence1": ["p"], "sentence2": ["q"]}), tmp_path / "two.parquet")
    with pytest.raises(DataError, match=r"two.parquet: want columns sentence1, sentence2, score; got sentence1, sentence2$"):
        read_scored(tmp_path / "two.parquet")
    _jsonl(tmp_path / "bad.jsonl", [{"sentence1": "a", "sentence2": "b", "score": "high"}])
    with pytest.raises(DataError, match=r"bad.jsonl: every row needs a numeric 'score'$"):
        read_scored(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match=r"^pairs file not found: "):
        read_scored(tmp_path / "none.csv")


def test_open_corpus_takes_one_path_as_well_as_a_list(tmp_path):
    from glovefaiss.io.corpus import open_corpus

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["a", "b", "c"]}), path)
    for given in (str(path), path, [path]):
        corpus = open_corpus(given)
        assert corpus.num_rows == 3
        assert [t.to_pylist() for _, t in corpus.batches(10)] == [["a", "b", "c"]]
