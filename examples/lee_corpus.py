"""Write the Lee news corpus (300 articles, shipped inside gensim's wheel) as a Parquet corpus."""

import sys
from importlib.resources import files

import pyarrow as pa
import pyarrow.parquet as pq


def main(out: str) -> None:
    path = files("gensim") / "test" / "test_data" / "lee_background.cor"
    texts = [line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
    pq.write_table(pa.table({"id": pa.array(range(1, len(texts) + 1), pa.int64()), "text": texts}), out)
    print(f"wrote {len(texts)} Lee news articles to {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lee.parquet")
