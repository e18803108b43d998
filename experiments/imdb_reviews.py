"""Kim's CNN on IMDB reviews: python -m experiments.imdb_reviews [--variant=...]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="imdb_reviews", default_model="textcnn")
