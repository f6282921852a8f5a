"""Tasks: each is a loss_fn plus the predict_fns its evaluators use (see mmjax.tasks.base.Task)."""
import flax.linen as nn
import ml_collections

from mmjax import errors
from mmjax.data.tokenizer import Tokenizer
from mmjax.tasks.base import Task, zeros_like_rows
from mmjax.tasks.classification import ClassificationTask
from mmjax.tasks.ctc import CtcTask, ctc_loss, greedy_decode, prefix_beam_search
from mmjax.tasks.contrastive import ContrastiveTask, sigmoid_contrastive_loss, softmax_contrastive_loss
from mmjax.tasks.generation import GenerationTask, sequence_loss, shift_right
from mmjax.tasks.itm import ContrastiveItmTask, caption_positives, mine_hard_negatives

TASKS = {"contrastive": ContrastiveTask, "generation": GenerationTask, "classification": ClassificationTask,
         "contrastive_itm": ContrastiveItmTask, "ctc": CtcTask}


def build(config: ml_collections.ConfigDict, model: nn.Module, tokenizer: Tokenizer) -> Task:
  """The task of `config.task` for `model`; generation and CTC also read `config.decode`."""
  task = errors.lookup(TASKS, config.task.name, "task", "config.task.name")
  if task is GenerationTask:
    return GenerationTask(config.task, model, decode_config=config.decode, bos_id=tokenizer.bos_id,
                          eos_id=tokenizer.eos_id, vocab_size=tokenizer.vocab_size)
  if task is CtcTask:
    return CtcTask(config.task, model, decode_config=config.decode, blank_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                   eos_id=tokenizer.eos_id, vocab_size=tokenizer.vocab_size)
  return task(config.task, model)


__all__ = ["TASKS", "ClassificationTask", "ContrastiveItmTask", "ContrastiveTask", "CtcTask", "GenerationTask", "Task",
           "build", "caption_positives", "ctc_loss", "greedy_decode", "mine_hard_negatives", "prefix_beam_search",
           "sequence_loss", "shift_right", "sigmoid_contrastive_loss", "softmax_contrastive_loss", "zeros_like_rows"]
