"""Tasks: each is a loss_fn plus the predict_fns its evaluators use."""
import flax.linen as nn
import ml_collections

from mmjax import errors
from mmjax.data.tokenizer import Tokenizer
from mmjax.tasks.classification import ClassificationTask
from mmjax.tasks.contrastive import ContrastiveTask, sigmoid_contrastive_loss, softmax_contrastive_loss
from mmjax.tasks.generation import GenerationTask, sequence_loss, shift_right

TASKS = {"contrastive": ContrastiveTask, "generation": GenerationTask, "classification": ClassificationTask}


def build(config: ml_collections.ConfigDict, model: nn.Module, tokenizer: Tokenizer):
  """The task of `config.task` for `model`; generation also reads `config.decode`."""
  name = config.task.name
  if name not in TASKS:
    raise errors.ConfigError(f"Unknown task {name!r}; known tasks: {sorted(TASKS)}.")
  if name == "generation":
    return GenerationTask(config.task, model, decode_config=config.decode, bos_id=tokenizer.bos_id,
                          eos_id=tokenizer.eos_id)
  return TASKS[name](config.task, model)


__all__ = ["TASKS", "build", "ClassificationTask", "ContrastiveTask", "GenerationTask", "sequence_loss",
           "shift_right", "softmax_contrastive_loss", "sigmoid_contrastive_loss"]
