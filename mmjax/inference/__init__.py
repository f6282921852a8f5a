"""Predictions of a trained run, or of a config's pretrained towers, on your own images and texts: captions,
answers, image–text scores, zero-shot classes and embeddings.

  predictor = Predictor.from_workdir("runs/shapes_clip")
  predictor.score(["a.png", "b.jpg"], ["a red circle", "a blue square"])   # f32[2, 2] cosine similarities
  Predictor.from_workdir("runs/caption", {"decode.method": "beam"}).caption(["a.png"])
  Predictor.from_config(fashion_lit.get_config()).embed_images(paths, projected=False)  # EfficientNet features

Every method takes lists and runs the task's own predict functions (mmjax.tasks), the ones evaluation runs, in
batches of config.eval_batch_size: each is jitted once per Predictor on the run's mesh, so it runs on any number
of devices and processes (every process passes the same inputs and gets every output; each prepares only the
rows it feeds). Images are file paths or uint8 [H, W, 3] photos, prepared as the dataset prepares a photo
(mmjax.data.photo_input); texts are tokenized with the run's tokenizer at the dataset's lengths.
"""
from mmjax.inference.inputs import ImageInput, check_images
from mmjax.inference.predictor import DEFAULT_TEMPLATES, Predictor

__all__ = ["DEFAULT_TEMPLATES", "ImageInput", "Predictor", "check_images"]
