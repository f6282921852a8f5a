"""Process-level settings that make jitted steps faster on the host, without touching the model."""
import ctypes
import ctypes.util
import logging

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory() -> bool:
  """Makes glibc malloc keep the memory a jitted step frees, so the next step reuses it.

  Why: on the CPU backend XLA allocates a step's temporaries with malloc on every call and
  frees them at its end (740 MiB for configs/bench_clip_s.py). glibc hands such blocks back to
  the kernel: blocks above the mmap threshold (at most 32 MiB) are unmapped on free, blocks a
  worker thread allocates above 64 MiB are mmapped whatever the settings, and a free heap top
  above the trim threshold is trimmed. The next step then faults every page in again, and the
  kernel zeroes each one: 190,000 page faults and 0.6 s of system time per step there. Raising
  the mmap threshold alone does not scale: bigger steps bring bigger buffers and the faults back.
  Here every thread allocates from the one brk heap, malloc never mmaps and never trims, so any
  buffer size is reused. The cost: memory the process once used stays with it until it exits
  (its RSS holds at its peak), as with any pooling allocator such as the GPU/TPU backends'.

  Call it first thing in a training or benchmark process, before JAX starts its threads (a
  thread that allocated already keeps its own arena). A no-op returning False without glibc
  (musl, macOS, Windows); on GPU/TPU it only affects host memory, where it is harmless.
  """
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  except OSError:
    return False
  if not hasattr(libc, "gnu_get_libc_version"):  # Only glibc has it, and only glibc's mallopt takes these settings.
    return False
  # M_TRIM_THRESHOLD -1: never trim (mallopt(3)).
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
  if not all(libc.mallopt(param, value) for param, value in settings):
    logging.warning("mallopt refused an allocator setting; jitted steps may fault their buffers in each time.")
    return False
  return True
