"""Kim's text CNN on trec: python -m experiments.trec --model=textcnn [--variant=... --word_vectors=PATH]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="trec", default_model="textcnn")
