"""Tasks: each is a loss_fn plus the predict_fns its evaluators use."""
import flax.linen as nn
import ml_collections

from mmjax import errors
from mmjax.tasks.contrastive import ContrastiveTask, sigmoid_contrastive_loss, softmax_contrastive_loss

TASKS = {"contrastive": ContrastiveTask}


def build(task_config: ml_collections.ConfigDict, model: nn.Module):
  if task_config.name not in TASKS:
    raise errors.ConfigError(f"Unknown task {task_config.name!r}; known tasks: {sorted(TASKS)}.")
  return TASKS[task_config.name](task_config, model)


__all__ = ["TASKS", "build", "ContrastiveTask", "softmax_contrastive_loss", "sigmoid_contrastive_loss"]
