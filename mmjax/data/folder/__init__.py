"""The user's own data: a folder of files and a manifest (JSON lines or CSV), built into a tfds dataset.

`manifest` reads and checks the rows, `media` the image and audio files, `builder` writes the dataset (cached
by a hash of its inputs) with the metadata `text_stats` gathers, `preprocess` turns its records into model inputs.
"""
from mmjax.data.folder.builder import FolderConfig, FolderDataset, make_builder
from mmjax.data.folder.example import write_example_folder
from mmjax.data.folder.manifest import BadRow, Row, assign_splits, parse_manifest_key, read
from mmjax.data.folder.text_stats import TextStats, normalize_answer
from mmjax.data.folder.preprocess import (PreprocessFolder, check_lengths, folder_label_names, photo_transform,
                                          train_source)

__all__ = ["BadRow", "FolderConfig", "FolderDataset", "PreprocessFolder", "Row", "TextStats", "assign_splits",
           "check_lengths", "folder_label_names", "make_builder", "normalize_answer", "parse_manifest_key",
           "photo_transform", "read", "train_source", "write_example_folder"]
