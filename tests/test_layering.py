"""The import layering: each part of mmjax imports only the parts below it, and the parts form no cycle."""
import ast
import glob
import os

from tests.helpers import REPO

# What each part may import (besides itself). `nn` ← `models` ← `tasks` ← `trainer`; data, evaluators,
# parallel, ablation and publish know nothing of models.
ALLOWED = {
    "errors": set(),
    "nn": {"errors"},
    "pretrained": {"errors"},
    "models": {"errors", "nn", "pretrained"},
    "data": {"errors", "pretrained"},
    "decoding": {"errors"},
    "tasks": {"errors", "data", "decoding"},
    "evaluators": {"errors", "data"},
    "parallel": {"errors"},
    "provenance": set(),
    "ablation": {"errors", "provenance"},
    "publish": {"errors", "ablation", "provenance"},
    "stored_config": {"errors"},
    "trainer": {"errors", "nn", "models", "data", "decoding", "tasks", "evaluators", "parallel", "pretrained",
                "stored_config"},
    "inference": {"errors", "data", "evaluators", "trainer", "tasks", "models", "stored_config"},
    "interpret": {"errors", "models", "tasks"},
}


def _part(module: str) -> str:
  """"mmjax.models.fusion.base" → "models"; "mmjax" → ""."""
  return module.split(".")[1] if module.count(".") else ""


def _imports() -> dict[str, set[str]]:
  """{part: the mmjax parts its modules import}."""
  found = {part: set() for part in ALLOWED}
  for path in glob.glob(os.path.join(REPO, "mmjax", "**", "*.py"), recursive=True):
    relative = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")
    part = _part(relative)
    if not part:
      continue
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "mmjax" else [])
      for name in names:
        if name.startswith("mmjax.") and _part(name) != part:
          found[part].add(_part(name))
  return found


def test_every_part_imports_only_the_parts_below_it():
  imports = _imports()
  assert set(imports) == set(ALLOWED), "a new part of mmjax needs its place in ALLOWED"
  upward = {part: sorted(used - ALLOWED[part]) for part, used in imports.items() if used - ALLOWED[part]}
  assert upward == {}


def test_the_parts_form_no_cycle():
  imports = _imports()
  done, active = set(), set()

  def visit(part: str, path: tuple[str, ...]) -> None:
    assert part not in active, f"import cycle: {' → '.join(path + (part,))}"
    if part in done:
      return
    active.add(part)
    for used in imports[part]:
      visit(used, path + (part,))
    active.remove(part)
    done.add(part)

  for part in imports:
    visit(part, ())
