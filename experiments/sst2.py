"""Kim's text CNN on sst2: python -m experiments.sst2 --model=textcnn [--variant=... --word_vectors=PATH]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="sst2", default_model="textcnn")
