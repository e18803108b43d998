"""Kim's text CNN on imdb_reviews: python -m experiments.imdb_reviews --model=textcnn [--variant=... --word_vectors=PATH]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="imdb_reviews", default_model="textcnn")
