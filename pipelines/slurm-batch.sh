#!/bin/bash
# Slurm job array: each task processes one deterministic shard of the inputs with `aullm batch --shard`.
# Submit:  sbatch --array=1-8 pipelines/slurm-batch.sh /data/interviews /scratch/aullm-out
# Merge:   aullm batch --merge /scratch/aullm-out --out /scratch/aullm-out   (after the array finishes)
# Every task writes into the same output folder (one subfolder per video); a re-submitted task
# skips videos that are already complete (--resume), so failed or pre-empted tasks can simply rerun.
#SBATCH --job-name=aullm-batch
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --output=aullm-batch-%A_%a.log
set -euo pipefail
INPUTS=${1:?usage: sbatch --array=1-N slurm-batch.sh INPUTS OUT}
OUT=${2:?usage: sbatch --array=1-N slurm-batch.sh INPUTS OUT}
N=${SLURM_ARRAY_TASK_COUNT:?run as a job array (sbatch --array=1-N)}
I=$(( SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-1} + 1 ))
exec aullm batch "$INPUTS" --out "$OUT" --shard "$I/$N" --resume --jobs "$(( SLURM_CPUS_PER_TASK / 2 > 0 ? SLURM_CPUS_PER_TASK / 2 : 1 ))" --quiet
