r"""Where the train step's time goes: `python -m experiments.benchmark --benchmark=profile
--config=configs/bench_clip_s.py [--profile_dir=DIR]`.

Traces `steps` calls of the real train step with jax.profiler (the trace stays in DIR for Perfetto or TensorBoard)
and reads back the events XLA's CPU runtime records for each operation it runs (a "thunk": one fused kernel, a
matmul library call, a copy). Reported per step:

- the step's wall time, split by what was running: one matmul, two or more matmuls at once, a matmul beside
  other work, only other work (elementwise fusions, copies, reductions: XLA:CPU runs each on one core), and
  nothing at all (the gaps between operations: the runtime's dispatch of the step's ~2,000 operations);
- the matmul operations' GFLOP (from the compiled HLO's dot shapes) and the rate they ran at while running;
- the operations that took longest, with their share of the step.

A matmul here is an HLO `dot` or a fusion around one (XLA:CPU hands these to its matmul library, YNNPACK on
current jaxlib). Operations overlap: XLA:CPU runs independent ones concurrently, so the per-operation times add up
to more than the wall time, and the split above is the honest account of the wall.
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from typing import Any

import jax

STATES = ("one matmul", "two or more matmuls", "matmul beside other work", "other work only", "nothing")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = \S+\[([\d,]*)\]\S* (\w[\w\-]*)\(", re.M)
_COMPUTATION = re.compile(r"^(?:ENTRY )?(%[\w.\-]+) \(.*?\) -> .*? \{\n(.*?)\n\}", re.M | re.S)
_CALLS = re.compile(r"calls=(%[\w.\-]+)")
_DOT = re.compile(r"= \S+\[([\d,]*)\]\S* dot\((%[\w.\-]+), %[\w.\-]+\),.*?lhs_contracting_dims=\{([\d,]*)\}")


def _shape(body: str, name: str) -> list[int]:
  match = re.search(re.escape(name) + r" = \S+\[([\d,]*)\]", body)
  return [int(d) for d in match.group(1).split(",") if d] if match else []


def _dot_flops(text: str, body: str) -> int:
  """2 · output elements · contracted size, summed over the dots in `text`, whose operands `body` defines."""
  flops = 0
  for output, lhs, contracting in _DOT.findall(text):
    lhs_shape = _shape(body, lhs)
    contracted = math.prod(lhs_shape[int(d)] for d in contracting.split(",") if d)
    flops += 2 * math.prod(int(d) for d in output.split(",") if d) * contracted
  return flops


def operations(hlo_text: str) -> dict[str, dict[str, Any]]:
  """{instruction name: {"source": the model code it came from (its op_name's last parts), "flops": FLOPs if it
  is a dot or a fusion around one, else None}} of the compiled module's text."""
  computations = dict(_COMPUTATION.findall(hlo_text))
  fused = {call for body in computations.values() for line in body.splitlines() if " fusion(" in line
           for call in _CALLS.findall(line)}
  found = {}
  # The operations the runtime runs: instructions of every computation but fusion bodies (the entry, and the
  # bodies of loops and conditionals).
  lines = [(line, body) for name, body in computations.items() if name not in fused for line in body.splitlines()]
  for line, body in lines:
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    name, _, opcode = match.groups()
    flops = None
    if opcode == "dot":
      flops = _dot_flops(line, body)
    elif opcode == "fusion" and (call := _CALLS.search(line)) and " dot(" in computations.get(call.group(1), ""):
      flops = _dot_flops(computations[call.group(1)], computations[call.group(1)])
    source = re.search(r'op_name="([^"]*)"', line)
    found[name] = {"source": "/".join(source.group(1).split("/")[-3:]) if source else "", "flops": flops}
  return found


def _events(trace_dir: str, module: str) -> list[dict[str, Any]]:
  """The complete events of the compiled `module`'s operations in the newest trace under `trace_dir`."""
  paths = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True),
                 key=os.path.getmtime)
  with gzip.open(paths[-1]) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  return [e for e in events if e.get("ph") == "X" and (e.get("args") or {}).get("hlo_module") == module
          and "hlo_op" in e["args"] and not e["name"].startswith("end:")]


def timeline(events: list[dict[str, Any]], is_matmul: Callable[[str], bool]) -> dict[str, float]:
  """Microseconds from the first operation's start to the last one's end, by STATES."""
  edges = sorted((t, d, is_matmul(e["args"]["hlo_op"])) for e in events
                 for t, d in ((e["ts"], 1), (e["ts"] + e["dur"], -1)))
  seconds = collections.Counter()
  running = {True: 0, False: 0}
  last = edges[0][0]
  for time, delta, matmul in edges:
    matmuls, others = running[True], running[False]
    state = ("nothing" if not matmuls and not others else "other work only" if not matmuls else
             "one matmul" if matmuls == 1 and not others else
             "two or more matmuls" if not others else "matmul beside other work")
    seconds[state] += time - last
    running[matmul] += delta
    last = time
  return {state: seconds[state] for state in STATES}


def profile_benchmark(compiled: Any, state: Any, batches: list, steps: int, directory: str | None,
                      top: int) -> dict:
  """See the module docstring: `steps` calls of the warmed-up `compiled` train step from `state`, traced."""
  directory = directory or tempfile.mkdtemp(prefix="mmjax_profile_")
  jax.profiler.start_trace(directory, create_perfetto_trace=True)
  for i in range(steps):
    state, metrics = compiled(state, batches[i % len(batches)])
  jax.block_until_ready((state, metrics))
  jax.profiler.stop_trace()
  hlo = compiled.as_text()
  module = re.search(r"^HloModule ([^\s,]+)", hlo, re.M).group(1)
  ops = operations(hlo)
  events = _events(directory, module)
  if not events:
    raise RuntimeError(f"The trace in {directory} has no operation events of {module}: this jaxlib's runtime does "
                       "not record them.")
  is_matmul = lambda op: ops.get(op, {}).get("flops") is not None  # noqa: E731
  split = {state: us / steps / 1000 for state, us in timeline(events, is_matmul).items()}
  busy = collections.Counter()
  for e in events:
    busy[e["args"]["hlo_op"]] += e["dur"] / steps / 1000
  matmul_ms = sum(ms for op, ms in busy.items() if is_matmul(op))
  matmul_gflop = sum(ops[op]["flops"] for op in busy if is_matmul(op)) / 1e9
  matmul_wall_ms = sum(split[s] for s in ("one matmul", "two or more matmuls", "matmul beside other work"))
  return {
      "benchmark": "profile", "steps": steps, "trace_dir": directory, "step_ms": sum(split.values()),
      "timeline_ms": split, "operations_per_step": len(events) / steps, "matmul_gflop_per_step": matmul_gflop,
      # The matmuls' FLOPs over the wall time some matmul ran (overlapping ones count once).
      "matmul_gflops_while_running": matmul_gflop / matmul_wall_ms * 1000,
      "matmul_operation_ms": matmul_ms, "other_operation_ms": sum(busy.values()) - matmul_ms,
      "top_operations": [{"operation": op, "source": ops.get(op, {}).get("source", ""), "ms": ms,
                          "gflops": ops[op]["flops"] / ms / 1e6 if is_matmul(op) else None}
                         for op, ms in busy.most_common(top)],
  }
