#!/usr/bin/env bash
# The history-input ablation (docs/results.md "A pass that reads the previous update"), 2 CPU cores:
# the shipped recipe with one change, --history-input; then K = 0 sets on Fashion-MNIST, 3 runs each.
# The shipped generator's IPC 1 and 10 cells are the CPU bench's (results/fmnist-v2, the same seed-0
# sets and evaluation seeds); its IPC 50 cell is made here (the CPU bench has not reached it).
set -eu
d=results/extra/history-input; mkdir -p $d/sets $d/evals
mgdd meta-train --source mnist --algorithm unrolled --passes 4 --meta-steps 300 --tasks-per-step 2 --ipc-range 1,30 \
    --checkpoint-every 10 --history-input --out runs/meta-history --quiet      # kept in results/extra/meta-history
python benchmarks/paired_meta_loss.py results/extra/meta-history results/extra/meta-unrolled4 --every 50 \
    > results/extra/meta-history/paired-loss.md
for ipc in 1 10 50; do
    mgdd generate runs/meta-history --dataset fashion-mnist --ipc $ipc --seed 0 --out $d/sets/history-ipc$ipc.safetensors --quiet
    mgdd evaluate $d/sets/history-ipc$ipc.safetensors --dataset fashion-mnist --runs 3 --out $d/evals/history-ipc$ipc.json --quiet
done
mgdd generate meta --dataset fashion-mnist --ipc 50 --seed 0 --out $d/sets/shipped-ipc50.safetensors --quiet
mgdd evaluate $d/sets/shipped-ipc50.safetensors --dataset fashion-mnist --runs 3 --out $d/evals/shipped-ipc50.json --quiet
# the second target, scikit-learn's digits at 28x28 (neither a source nor tuned on), both generators, 2 CPU cores
for gen in runs/meta-history meta; do
    name=$([ "$gen" = meta ] && echo shipped || echo history)
    for ipc in 1 10; do
        mgdd generate $gen --dataset digits --image-size 28 --ipc $ipc --seed 0 --out $d/sets/$name-digits28-ipc$ipc.safetensors --quiet
        mgdd evaluate $d/sets/$name-digits28-ipc$ipc.safetensors --dataset digits --image-size 28 --runs 3 \
            --out $d/evals/$name-digits28-ipc$ipc.json --quiet
    done
done
