"""The manifest of a folder dataset: one example per line of a JSON-lines or CSV file, checked row by row.

A row names its media by paths relative to the manifest's folder (or absolute) and carries any subset of:

  id             a name for the example (default: its image or audio path, else file:line)
  image          an image file of any size and format PIL reads
  caption        one caption; or `captions`: several (a JSON list; in CSV, separated by " | ")
  question, answer, question_type   visual question answering (question_type optional: "all")
  label          a class name
  audio          a WAV/FLAC/OGG file (any rate: resampled when the dataset is built)
  split          which split the row belongs to (train, test, ...)

Every row must have the fields the first row has (a dataset is one kind of example). A row that breaks a
rule is a `BadRow` naming the file and line; `read` returns them beside the good rows so the caller decides:
an error, or (config.data.skip_bad_rows) a count that is reported. A file that is not JSON lines or CSV at all,
or a field nobody knows, is always an error: no row of it could be trusted.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmjax import errors

FIELDS = ("id", "image", "caption", "captions", "question", "answer", "question_type", "label", "audio", "split")
TEXT_FIELDS = ("question", "answer", "question_type", "label", "split", "id")
MEDIA_FIELDS = ("image", "audio")
CSV_CAPTION_SEPARATOR = " | "


@dataclasses.dataclass(frozen=True)
class Row:
  """One example of a manifest: where it is (`source` "file:line"), its fields (paths made absolute, `captions`
  always a list) and its split."""
  source: str
  id: str
  fields: Mapping[str, Any]
  split: str


@dataclasses.dataclass(frozen=True)
class BadRow:
  source: str
  problem: str

  def __str__(self) -> str:
    return f"{self.source}: {self.problem}"


def parse_manifest_key(manifest: str) -> dict[str | None, str]:
  """`config.data.manifest` → {split or None: file}: one file ("train.jsonl", splits from each row's `split`
  field or config.data.split_ratio), or one file per split ("train=train.jsonl,test=val.csv")."""
  parts = [part.strip() for part in manifest.split(",") if part.strip()]
  if not parts:
    raise errors.ConfigError("config.data.manifest is empty; name a JSON-lines or CSV file in config.data.path, "
                             "e.g. 'train.jsonl', or one per split: 'train=train.jsonl,test=test.jsonl'.")
  if len(parts) == 1 and "=" not in parts[0]:
    return {None: parts[0]}
  files = {}
  for part in parts:
    split, equals, name = (text.strip() for text in part.partition("="))
    if not equals or not split or not name:
      raise errors.ConfigError(f"config.data.manifest={manifest!r}: {part!r} is not split=file; write e.g. "
                               "'train=train.jsonl,test=test.jsonl'.")
    files[split] = name
  return files


def _records(path: str) -> list[tuple[int, dict[str, Any] | str]]:
  """(line number, record or the reason it is not one) of every non-blank line of a JSON-lines or CSV file."""
  if not os.path.isfile(path):
    raise errors.ConfigError(f"Manifest {path} does not exist; check config.data.path and config.data.manifest.")
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise errors.InputError(f"Manifest {path} cannot be read as UTF-8 text ({e}).") from None
  if path.lower().endswith(".csv"):
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
      raise errors.InputError(f"Manifest {path} is empty: a CSV manifest starts with a header row of field names.")
    records = []
    for row in reader:
      if None in row:
        records.append((reader.line_num, f"has {len(row[None])} more value(s) than the header has columns"))
      else:
        records.append((reader.line_num, {key: value for key, value in row.items() if value not in ("", None)}))
    return records
  records = []
  for number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      if not records and number == 1:
        raise errors.InputError(f"Manifest {path} line 1 is not JSON ({e.msg}): a manifest is JSON lines (one "
                                "object per line, e.g. {\"image\": \"a.jpg\", \"caption\": \"a cat\"}) or a .csv "
                                "file with a header row.") from None
      records.append((number, f"is not valid JSON ({e.msg} at column {e.colno})"))
      continue
    records.append((number, record if isinstance(record, dict) else f"is a JSON {type(record).__name__}, not an "
                    "object of fields"))
  return records


def _row(record: dict[str, Any], source: str, folder: str, csv_file: bool) -> dict[str, Any] | str:
  """The checked fields of one record, or what is wrong with it."""
  fields: dict[str, Any] = {}
  for key, value in record.items():
    if key in ("caption", "captions"):
      captions = value if isinstance(value, list) else (
          value.split(CSV_CAPTION_SEPARATOR.strip()) if csv_file and key == "captions" else [value])
      if not captions or not all(isinstance(c, str) for c in captions):
        return f"{key} must be text or a list of texts; got {value!r}"
      captions = [c.strip() for c in captions]
      if not all(captions):
        return f"has an empty {key[:7]}"
      fields["captions"] = fields.get("captions", []) + captions
    elif key in MEDIA_FIELDS:
      if not isinstance(value, str) or not value.strip():
        return f"{key} must be a file path; got {value!r}"
      fields[key] = os.path.normpath(os.path.join(folder, os.path.expanduser(value.strip())))
    else:
      if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("label", "answer", "id"):
        value = str(value)  # A numeric class name or answer ("3") as written.
      if not isinstance(value, str):
        return f"{key} must be text; got {value!r}"
      if not value.strip():
        return f"has an empty {key}"
      fields[key] = value.strip()
  return fields


def read(files: Mapping[str | None, str], folder: str) -> tuple[list[Row], list[BadRow]]:
  """The rows of the manifest `files` (see parse_manifest_key; paths relative to `folder`), and its bad rows.

  A row's split is its file's (when there is one per split), else its `split` field, else None (the caller
  splits by ratio)."""
  rows, bad = [], []
  schema: set[str] | None = None
  seen_ids: dict[str, str] = {}
  for file_split, name in files.items():
    path = os.path.join(folder, os.path.expanduser(name))
    csv_file = path.lower().endswith(".csv")
    for number, record in _records(path):
      source = f"{name}:{number}"
      if isinstance(record, str):
        bad.append(BadRow(source, record))
        continue
      unknown = sorted(set(record) - set(FIELDS))
      if unknown:
        raise errors.InputError(f"{source}: unknown field(s) {unknown}; a manifest row may have {list(FIELDS)}. "
                                "Rename the field (or drop it from the manifest).")
      fields = _row(record, source, os.path.dirname(path), csv_file)
      if isinstance(fields, str):
        bad.append(BadRow(source, fields))
        continue
      content = set(fields) - {"id", "split", "question_type"}
      if schema is None:
        schema = content
        schema_source = source
      if content != schema:
        missing, extra = sorted(schema - content), sorted(content - schema)
        bad.append(BadRow(source, f"has fields {sorted(content)} but {schema_source} (the first row) has "
                          f"{sorted(schema)}" + (f": missing {missing}" if missing else f": extra {extra}")))
        continue
      split = file_split or fields.get("split")
      if file_split and fields.get("split", file_split) != file_split:
        bad.append(BadRow(source, f"says split {fields['split']!r} but is in the {file_split!r} manifest"))
        continue
      example_id = fields.get("id") or os.path.relpath(fields.get("image") or fields.get("audio") or source, folder)
      if example_id in seen_ids:
        bad.append(BadRow(source, f"repeats id {example_id!r} of {seen_ids[example_id]}"))
        continue
      seen_ids[example_id] = source
      rows.append(Row(source, example_id, {k: v for k, v in fields.items() if k not in ("id", "split")}, split))
  if not rows and not bad:
    raise errors.InputError(f"Manifest {', '.join(files.values())} in {folder} has no rows; write one example per "
                            "line, e.g. {\"image\": \"a.jpg\", \"caption\": \"a cat\"}.")
  return rows, bad


def parse_split_ratio(split_ratio: str) -> dict[str, float]:
  """"train=0.8,test=0.2" → {"train": 0.8, "test": 0.2} (fractions summing to 1)."""
  ratios = {}
  for part in filter(None, (p.strip() for p in split_ratio.split(","))):
    split, _, value = part.partition("=")
    try:
      ratios[split.strip()] = float(value)
    except ValueError:
      raise errors.ConfigError(f"config.data.split_ratio={split_ratio!r}: {part!r} is not split=fraction, e.g. "
                               "'train=0.8,test=0.2'.") from None
  if not ratios or any(r <= 0 for r in ratios.values()) or abs(sum(ratios.values()) - 1) > 1e-6:
    raise errors.ConfigError(f"config.data.split_ratio={split_ratio!r} must be positive fractions summing to 1, "
                             "e.g. 'train=0.8,test=0.2'.")
  return ratios


def assign_splits(rows: Sequence[Row], split_ratio: str, seed: int) -> dict[str, list[Row]]:
  """{split: rows in manifest order}. Rows without a split (no per-split files, no `split` field) are dealt by
  `split_ratio` ("train=0.8,test=0.2"; empty: all "train") over a permutation seeded by `seed`, so the same
  manifest and seed always give the same splits."""
  unsplit = [i for i, row in enumerate(rows) if row.split is None]
  splits = [row.split for row in rows]
  if unsplit and len(unsplit) != len(rows):
    first = rows[unsplit[0]]
    raise errors.InputError(f"{first.source} has no split but other rows do: give every row a `split`, or none "
                            "(then config.data.split_ratio splits them).")
  if unsplit:
    ratios = parse_split_ratio(split_ratio) if split_ratio else {"train": 1.0}
    order = np.random.default_rng(seed).permutation(len(rows))
    bounds = np.round(np.cumsum(list(ratios.values())) * len(rows)).astype(int)
    for split, start, end in zip(ratios, [0, *bounds[:-1]], bounds):
      for index in order[start:end]:
        splits[index] = split
  by_split: dict[str, list[Row]] = {}
  for row, split in zip(rows, splits):
    by_split.setdefault(split, []).append(dataclasses.replace(row, split=split))
  if unsplit:
    empty = [split for split in ratios if split not in by_split]
    if empty:
      raise errors.InputError(f"config.data.split_ratio={split_ratio!r} leaves split(s) {empty} with no examples "
                              f"of the {len(rows)} rows; add rows or change the ratio.")
  return by_split
