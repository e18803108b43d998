"""Kim's CNN on subj (10-fold CV): python -m experiments.subj --fold=K | --cv [--variant=...]."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="subj", default_model="textcnn")
