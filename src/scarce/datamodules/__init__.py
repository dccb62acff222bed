"""LightningDataModules: read or convert in ``prepare_data``, build datasets in ``setup``, no I/O in ``__init__``."""
