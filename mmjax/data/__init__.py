"""Datasets, preprocessing, tokenizers and the input pipeline.

Public entry points take the `config.data` block (see `configs.common.shapes_data_config` and
`av_digits_data_config`); `DATASETS` maps its `name` to a tfds builder and its preprocessing.
"""
from mmjax.data.pipeline import (
    DATASETS,
    TrainLoader,
    class_names,
    eval_batches,
    field_values,
    get_tokenizer,
    num_examples,
    prepare,
    train_loader,
    vqa_vocabulary,
)
from mmjax.data.av_digits import AvDigits
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
    "class_names",
    "eval_batches",
    "field_values",
    "get_tokenizer",
    "num_examples",
    "prepare",
    "tokenize_to_length",
    "train_loader",
    "vqa_vocabulary",
]
