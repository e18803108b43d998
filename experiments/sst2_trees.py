"""Kim's CNN on SST-2 as Kim (PTB trees, neutral dropped): python -m experiments.sst2_trees."""

from experiments import common

if __name__ == "__main__":
    common.run(dataset="sst2_trees", default_model="textcnn")
