"""absl entry points: `python -m experiments.NAME [flags]`, thin files over one runner."""
