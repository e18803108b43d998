"""Kim's text CNN on mr: python -m experiments.mr --model=textcnn [--variant=... --word_vectors=PATH]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="mr", default_model="textcnn")
