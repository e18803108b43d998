"""Kim's CNN on TREC question types: python -m experiments.trec [--variant=...]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="trec", default_model="textcnn")
