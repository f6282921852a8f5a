"""experiments/predict.py and experiments/embed.py on the contrastive smoke run: what they print and write equals
the Predictor's results for the same files, and a missing image is one `error:` line naming it, before anything is
built."""
import json
import subprocess
import sys

import numpy as np
import pytest

from mmjax.inference import Predictor
from tests.helpers import REPO, run_module
from tests.test_inference import write_test_pngs

pytestmark = pytest.mark.xdist_group("clip_smoke")  # The worker that trains the contrastive smoke run.


@pytest.fixture(scope="module")
def pngs(shapes_data_dir, tmp_path_factory):
  """Three Shapes test images as PNG files in a folder, one of them in a subfolder, beside a file that is no image."""
  folder = tmp_path_factory.mktemp("photos")
  (folder / "more").mkdir()
  paths, texts = write_test_pngs(shapes_data_dir, folder, count=3)
  moved = str(folder / "more" / "z.png")
  (folder / "test2.png").rename(moved)
  (folder / "notes.txt").write_text("not an image")
  return str(folder), paths[:2] + [moved], [t["caption"] for t in texts]


@pytest.fixture(scope="module")
def predictor(clip_smoke_run):
  return Predictor.from_workdir(clip_smoke_run[0])


def test_predict_prints_the_predictors_scores_and_classes_as_one_json_line_per_image(clip_smoke_run, predictor, pngs):
  workdir, _ = clip_smoke_run
  _, paths, captions = pngs
  result = run_module("experiments.predict", f"--workdir={workdir}", *(f"--image={path}" for path in paths),
                      f"--texts={'|'.join(captions)}", "--classes=red,green,blue", "--templates=a {} shape",
                      "--top_k=2")
  rows = [json.loads(line) for line in result.stdout.splitlines()]
  scores = predictor.score(paths, captions)
  probabilities = predictor.classify(paths, ["red", "green", "blue"], ["a {} shape"])
  assert [row["image"] for row in rows] == paths
  for row, image_scores, image_probabilities in zip(rows, scores, probabilities):
    assert set(row) == {"image", "scores", "classes"}
    np.testing.assert_allclose([row["scores"][caption] for caption in captions], image_scores, atol=1e-4)
    top = np.argsort(-image_probabilities)[:2]
    assert list(row["classes"]) == [["red", "green", "blue"][i] for i in top]
    np.testing.assert_allclose(list(row["classes"].values()), image_probabilities[top], atol=1e-4)


def test_predict_names_a_missing_image_on_one_line(clip_smoke_run, pngs, tmp_path):
  _, paths, _ = pngs
  command = [sys.executable, "-m", "experiments.predict", f"--workdir={clip_smoke_run[0]}", f"--image={paths[0]}",
             f"--image={tmp_path / 'missing.jpg'}", "--caption"]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and result.stdout == "", result.stderr[-3000:]
  assert result.stderr.splitlines() == [f"error: Image file {tmp_path / 'missing.jpg'} does not exist."]


def test_embed_writes_a_folders_image_embeddings_and_their_paths_in_sorted_order(clip_smoke_run, predictor, pngs,
                                                                                 tmp_path):
  workdir, _ = clip_smoke_run
  folder, paths, _ = pngs
  out = str(tmp_path / "emb" / "photos")
  summary = json.loads(run_module("experiments.embed", f"--workdir={workdir}", f"--folder={folder}",
                                  f"--out={out}").stdout)
  embeddings = np.load(out + ".npy")
  assert summary == {"embeddings": out + ".npy", "index": out + ".tsv", "rows": 3, "dim": embeddings.shape[1]}
  # Sorted paths: the subfolder's image comes first; the text file is no image.
  ordered = [paths[2], paths[0], paths[1]]
  with open(out + ".tsv") as f:
    assert f.read().splitlines() == ["row\tpath"] + [f"{i}\t{path}" for i, path in enumerate(ordered)]
  assert embeddings.dtype == np.float32
  np.testing.assert_allclose(embeddings, predictor.embed_images(ordered), atol=1e-5)
