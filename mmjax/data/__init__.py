"""Datasets, preprocessing, tokenizers and the input pipeline.

Public entry points take the `config.data` block (see `configs.common.shapes_data_config` and
`av_digits_data_config`); `DATASETS` maps its `name` to a tfds builder and its preprocessing.
"""
from mmjax.data.pipeline import (
    TrainLoader,
    element_spec,
    eval_batches,
    field_values,
    get_tokenizer,
    label_names,
    num_examples,
    photo_input,
    prepare,
    sample_rate,
    train_loader,
    train_split,
)
from mmjax.data.av_digits import AvDigits
from mmjax.data.registry import DATASETS
from mmjax.data.shapes import Shapes
from mmjax.data.tokenizer import CharTokenizer, Tokenizer, WordTokenizer, tokenize_to_length

__all__ = [
    "AvDigits",
    "CharTokenizer",
    "DATASETS",
    "Shapes",
    "Tokenizer",
    "TrainLoader",
    "WordTokenizer",
    "element_spec",
    "eval_batches",
    "field_values",
    "get_tokenizer",
    "label_names",
    "num_examples",
    "photo_input",
    "prepare",
    "sample_rate",
    "tokenize_to_length",
    "train_loader",
    "train_split",
]
