"""LightningModules: training logic only, around the networks of ``scarce.nets``."""
