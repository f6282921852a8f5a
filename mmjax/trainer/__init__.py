"""Training machinery: a run built from a config, the one train loop, evaluation, fine-tuning, the optimizer,
checkpoints, the workdir and its metrics.

  train(config, workdir)       trains (resuming from the workdir's newest checkpoint) and returns the final metrics
  evaluate(config, workdir)    runs the config's evaluators on the workdir's newest checkpoint
  load_state(config, workdir)  the newest TrainState of a workdir, e.g. in a notebook
  build_run(config)            mesh, model, task, optimizer and the state's layout, for scripts of your own
  build_task(config)           the task (loss and predict functions) with its model
"""
from mmjax.trainer.loop import train
from mmjax.trainer.run import Run, build_run, build_task, evaluate, load_state

__all__ = ["Run", "build_run", "build_task", "evaluate", "load_state", "train"]
