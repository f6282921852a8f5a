"""The one pytree a run trains and checkpoints."""
import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  opt_state: dict
  rng: jax.Array  # Base key; step s uses fold_in(rng, s), so resuming replays the same randomness.
