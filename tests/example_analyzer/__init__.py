"""An example analyzer built by docs/adding-an-analyzer.md alone: its module, its queries, its
migration pair and its tests, and no change anywhere else."""
