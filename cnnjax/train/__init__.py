"""Training engine: configuration, paper recipes, optax optimisers, sharded steps, the runner."""
