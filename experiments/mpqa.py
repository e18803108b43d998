"""Kim's CNN on mpqa (10-fold CV): python -m experiments.mpqa --fold=K | --cv [--variant=...]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="mpqa", default_model="textcnn")
