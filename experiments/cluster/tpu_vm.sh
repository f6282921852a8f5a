#!/bin/bash
# mmjax on a Cloud TPU VM slice with several hosts (e.g. v5litepod-16: 4 hosts × 4 chips): the same command runs
# on every host (--worker=all), and --distributed_auto lets JAX find the slice's hosts from the TPU metadata.
#
#   TPU_NAME=my-slice ZONE=us-west4-a experiments/cluster/tpu_vm.sh /mnt/shared/runs/shapes_clip
#
# The workdir must be a directory every host sees (a Filestore/NFS mount): all hosts write each checkpoint
# together. The first command copies this checkout to every host and installs it with the TPU build of JAX.
# Stopping or preempting the slice sends SIGTERM: every process saves at the next step; running the train
# command again resumes, on this slice or a slice of another size.
set -euo pipefail

WORKDIR=${1:?usage: TPU_NAME=... ZONE=... tpu_vm.sh <workdir every host sees> [config]}
CONFIG=${2:-configs/shapes_clip.py}
ON_ALL=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all)

gcloud compute tpus tpu-vm scp --recurse "$(git rev-parse --show-toplevel)" "$TPU_NAME":mmjax --zone="$ZONE" --worker=all
"${ON_ALL[@]}" --command='cd mmjax && pip install -q -r requirements.txt && pip install -q -U "jax[tpu]==0.10.2"'
"${ON_ALL[@]}" --command="cd mmjax && MMJAX_DATA_DIR=$(dirname "$WORKDIR")/tensorflow_datasets python -m experiments.train --config=$CONFIG --workdir=$WORKDIR --distributed_auto"
