"""Data: datasets in their official layouts, TFRecord I/O, input pipelines, DataModules."""
