"""Checks that a prepared dataset's files are whole before a run reads them.

tfds stores a split as ArrayRecord shards (Riegeli files) and lists in dataset_info.json each shard and the
number of records it holds. A shard cut short (a full disk, an interrupted copy) or with a flipped bit would
otherwise surface mid-training, as a Riegeli traceback from the loader, after the compile. `find_problem` opens
every listed shard, compares its record count with the listed one and reads every record: Riegeli checks the
hash of each chunk's header and data as it reads them, so a damaged record is found (a flip in the zero padding
after the last chunk goes unnoticed, and is harmless: nothing reads it).

Reading everything costs about 0.8 s for the default Shapes dataset (60,000 + 2,000 + 2,000 records, 272 MB; 1.1 s
with its files evicted from the page cache, on this 2-core machine) and 0.04 s for its small variant. That is
little beside what a run takes to start, so `check` reads the files at the first open in every process rather
than trusting a marker of an earlier check: a file can go bad without its size or mtime changing.

A damaged dataset is regenerated on request only: `mmjax.data.prepare(..., regenerate=True)`, which the scripts'
`--regenerate_data` flag asks for. A flag, not a `config.data` key: repairing this machine's data dir is an
action, not part of the experiment, so it has no place in the workdir's config.json (where it would be compared
at every resume), and it works as is on the stored config of an old workdir (experiments.evaluate).
"""
from __future__ import annotations

import os

import tensorflow_datasets as tfds
from array_record.python import array_record_module

from mmjax import errors

# Records per read: bounds the memory a check holds (about 4 MB of Shapes records).
_RECORDS_PER_READ = 1024

# Version folders found whole in this process: each is checked once, not at every prepare() of a run.
_intact: set[str] = set()


def find_problem(builder: tfds.core.DatasetBuilder) -> str | None:
  """What is wrong with the first bad shard of `builder`'s prepared dataset, starting with the shard's path
  (e.g. "/data/shapes/small/1.1.0/shapes-train.array_record-00000-of-00001 is missing"), or None if every
  shard dataset_info.json lists is there, holds its listed number of records, and reads back intact."""
  for split in builder.info.splits.values():
    for shard in split.file_instructions:
      problem = _shard_problem(os.fspath(shard.filename), shard.examples_in_shard)
      if problem:
        return problem
  return None


def _shard_problem(path: str, expected: int) -> str | None:
  if not os.path.isfile(path):
    return f"{path} is missing"
  try:
    reader = array_record_module.ArrayRecordReader(path)
    count = reader.num_records() if reader.ok() else None
    if count == expected:
      for start in range(0, count, _RECORDS_PER_READ):
        reader.read(start, min(start + _RECORDS_PER_READ, count))
    # A reader that failed to open says why only here, e.g. for a file cut short "Failed to read RiegeliPostscript".
    reader.close()
  except RuntimeError as e:  # Riegeli's words, e.g. "chunk data hash mismatch ... at byte 4592964".
    return f"{path} is damaged ({' '.join(str(e).split())})"
  if count is None:
    return f"{path} is not a readable ArrayRecord file"
  if count != expected:
    return f"{path} holds {count} records where dataset_info.json lists {expected}"
  return None


def check(builder: tfds.core.DatasetBuilder, *, regenerate: bool) -> bool:
  """Whether `builder`'s prepared dataset is whole (checked once per process and version folder). A damaged one
  gives False if `regenerate` (the caller then makes it again), else an InputError that names the bad file and
  how to regenerate the dataset."""
  if builder.data_dir in _intact:
    return True
  problem = find_problem(builder)
  if problem is None:
    _intact.add(builder.data_dir)
    return True
  if regenerate:
    return False
  raise errors.InputError(
      f"Dataset file {problem}. Rerun with --regenerate_data to delete {builder.data_dir} (that folder only) and "
      f"generate {builder.info.full_name} again; in Python: mmjax.data.prepare(config.data, regenerate=True).")
