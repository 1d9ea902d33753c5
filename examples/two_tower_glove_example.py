"""The design's two-tower example, offline: a GloVe two-tower model, trained briefly on a few
(query, positive, negative) triplets with the triplet loss, then used for search.

Runs on CPU in a few seconds with the bundled glove-wiki-gigaword-50 vectors.
"""

from glovefaiss import SemanticSearch
from glovefaiss.config import load_config
from glovefaiss.train.data import PairData, Tokenizer
from glovefaiss.train.embeddings import GloVeEmbedding
from glovefaiss.train.fit import fit
from glovefaiss.train.towers import build_two_tower
from glovefaiss.vectors.sources import load_vectors

triplets = [
    ("I like cats.", "Kittens love to play with yarn.", "The stock market fell sharply today."),
    ("pets that purr", "The cat sat on the mat.", "Investors worry about rising interest rates."),
    ("loyal animals", "Dogs are loyal and friendly pets.", "The stock market fell sharply today."),
    ("share prices dropped", "The stock market fell sharply today.", "Kittens love to play with yarn."),
    ("central bank policy", "Investors worry about rising interest rates.", "The cat sat on the mat."),
]
documents = [
    "The cat sat on the mat.",
    "Dogs are loyal and friendly pets.",
    "The stock market fell sharply today.",
    "Kittens love to play with yarn.",
    "Investors worry about rising interest rates.",
]

config = load_config()  # defaults: triplet loss (margin 0.2); we set the design's values below
config = config.replace({"loss.margin": 0.3, "embedding.trainable": True, "optimizer.lr": 0.01, "batch_size": 4})
vectors = load_vectors("glove-wiki-gigaword-50")  # bundled, no download
data = PairData.from_triplets(triplets)
tokenizer = Tokenizer.build(data.texts() + [documents], config.tokeniser, vectors)

embedding = GloVeEmbedding(len(tokenizer), vocab=tokenizer.words, vectors=vectors, trainable=True)
model = build_two_tower(embedding, arch="avg_pool", hidden_dim=None, tied_weights=True, dropout=0.1)
result = fit(model, tokenizer, data, config, epochs=5, seed=0, progress=False)
print(f"trained {len(data)} triplets for 5 epochs, last loss {result.history[-1].loss:.4f}")

search = SemanticSearch(model, tokenizer)
search.index_documents(documents)
for hit in search.search("I like cats.", top_k=3):
    print(f"{hit['score']:.3f}  {hit['document']}")
