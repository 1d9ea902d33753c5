"""The design's GloVeSearch example: five documents, one query, bundled GloVe vectors (offline)."""

from glovefaiss import GloVeSearch

documents = [
    "The cat sat on the mat.",
    "Dogs are loyal and friendly pets.",
    "The stock market fell sharply today.",
    "Kittens love to play with yarn.",
    "Investors worry about rising interest rates.",
]

search = GloVeSearch(model_name="glove-wiki-gigaword-50")
search.index_documents(documents)
for hit in search.search("I like cats.", top_k=3):
    print(f"{hit['score']:.3f}  {hit['document']}")
