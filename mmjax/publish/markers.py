"""README.md and docs/*.md include published tables between markers, and `sync` keeps them equal to the
measurements:

  <!-- results: vqa_fusion_400 -->
  (experiments/results/vqa_fusion_400/table.md, written here by sync)
  <!-- /results: vqa_fusion_400 -->

`sync` first makes every results directory's summary.json and table.md again from its measurements (so a table
edited by hand, or one written by older code, is caught), then rewrites every marked section with its table.
With `check=True` it changes nothing and lists what differs.
"""
from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Mapping

from mmjax import errors
from mmjax.publish import benchmark, store, sweep, table, timing

RENDERERS: Mapping[str, Callable[[str], dict[str, str]]] = {"sweep": sweep.render, "benchmark": benchmark.render,
                                                            "timing": timing.render, "table": table.render}
_START = re.compile(r"^<!-- results: (\S+) -->$", re.M)
_SECTION = re.compile(r"^(<!-- results: (\S+) -->\n).*?^(<!-- /results: \2 -->)$", re.M | re.S)
_PUBLISH = ("python -m experiments.report --sweep_dir=<the ablate --workdir> --name={name} (or "
            "--benchmark_json=<the benchmark's output>, --timing_json=<experiments.time_readme's output> or "
            "--table_json=<a script's --json output> --name={name})")


def documents(root: str) -> list[str]:
  """The files whose marked sections sync rewrites: README.md and docs/*.md."""
  paths = [os.path.join(root, "README.md"), *sorted(glob.glob(os.path.join(root, "docs", "*.md")))]
  return [path for path in paths if os.path.exists(path)]


def render(directory: str) -> dict[str, str]:
  """{file: text} of the results directory's derived files, made again from its measurements."""
  path = os.path.join(directory, store.SUMMARY_FILE)
  try:
    kind = store.read_json(path)["kind"]
    return RENDERERS[kind](directory)
  except (OSError, KeyError, ValueError) as e:
    raise errors.InputError(f"{path} cannot be read as published results ({type(e).__name__}: {e}): publish it "
                            f"again with {_PUBLISH.format(name=os.path.basename(directory))}.") from None


def sections(text: str, path: str) -> list[str]:
  """The names of the marked sections of `text` (the file `path`), each start marker closed by its end marker."""
  closed = [match.group(2) for match in _SECTION.finditer(text)]
  for match in _START.finditer(text):
    if match.group(1) not in closed:
      line = text.count("\n", 0, match.start()) + 1
      raise errors.InputError(f"{path}:{line}: {match.group(0)} has no <!-- /results: {match.group(1)} --> on a "
                              "line of its own after it.")
  return closed


def replace_sections(text: str, tables: Mapping[str, str]) -> str:
  """`text` with each marked section's content replaced by its table (a blank line on either side); the markers
  and everything outside them stay as they are."""
  return _SECTION.sub(lambda match: f"{match.group(1)}\n{tables[match.group(2)]}\n{match.group(3)}", text)


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


def sync(root: str, check: bool = False) -> list[str]:
  """Regenerates the results directories below `root` and the marked sections of its documents; returns each
  file and section that was rewritten, or with `check` that differs (and changes nothing). A marker naming no
  results directory is an InputError, raised before anything is written."""
  results_root = os.path.join(root, store.RESULTS_DIR)
  texts = {path: _read(path) for path in documents(root)}
  names = {path: sections(text, path) for path, text in texts.items()}
  for path, found in names.items():
    for name in found:
      if not os.path.exists(os.path.join(results_root, name, store.SUMMARY_FILE)):
        raise errors.InputError(f"{os.path.relpath(path, root)}: <!-- results: {name} --> names "
                                f"{os.path.join(store.RESULTS_DIR, name)}, which holds no published results: "
                                f"run {_PUBLISH.format(name=name)}.")
  differences, tables = [], {}
  for summary in sorted(glob.glob(os.path.join(results_root, "*", store.SUMMARY_FILE))):
    directory = os.path.dirname(summary)
    files = render(directory)
    for file, text in files.items():
      path = os.path.join(directory, file)
      if not os.path.exists(path) or _read(path) != text:
        differences.append(f"{os.path.relpath(path, root)} (made again from its measurements)")
        if not check:
          store.write_files(directory, {file: text})
    tables[os.path.basename(directory)] = files[store.TABLE_FILE]
  for path, text in texts.items():
    new = replace_sections(text, tables)
    if new == text:
      continue
    old_sections = {match.group(2): match.group(0) for match in _SECTION.finditer(text)}
    new_sections = {match.group(2): match.group(0) for match in _SECTION.finditer(new)}
    differences += [f"{os.path.relpath(path, root)}, section {name} "
                    f"({os.path.join(store.RESULTS_DIR, name, store.TABLE_FILE)})"
                    for name in dict.fromkeys(names[path]) if old_sections[name] != new_sections[name]]
    if not check:
      store.write_files(os.path.dirname(path), {os.path.basename(path): new})
  return differences
