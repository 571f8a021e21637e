"""PyTorch DistributedDataParallel (gloo) peer for `ringtrain bench train --peer pytorch`.

Trains the same dense stack, on the same samples, with the same global batch and optimizer as the
ringtrain job the bench describes in --spec (JSON), and prints one JSON line:
{"event": "done", "workers": N, "samplesPerSecond": ..., "meanStepMs": ..., "threads": T, "finalLoss": ...}.

Each rank gets global_batch / N samples per step (the first ranks one more when it does not divide,
like ringtrain's shard plan) and runs with T = max(1, cores // N) intra-op threads, so the ranks do
not oversubscribe the cores. Timing: after the warm-up steps, a barrier, then the measured steps;
samples/s = measured samples / the slowest rank's wall time.

Only a peer's figures: ringtrain never asserts them.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def build_model(spec):
    layers, width = [], spec["inputSize"]
    dense = spec["layers"]
    for index, layer in enumerate(dense):
        layers.append(nn.Linear(width, layer["units"]))
        width = layer["units"]
        activation = layer.get("activation", "linear")
        last = index == len(dense) - 1
        # The last softmax is folded into CrossEntropyLoss, as ringtrain's fromLogits path does.
        if last and activation in ("softmax", "linear"):
            continue
        layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def build_optimizer(spec, params):
    opt = spec["optimizer"]
    if opt["type"] == "adam":
        return torch.optim.Adam(params, lr=opt["learningRate"], betas=(opt["beta1"], opt["beta2"]), eps=opt["epsilon"])
    momentum = opt.get("momentum", 0.0)
    return torch.optim.SGD(params, lr=opt["learningRate"], momentum=momentum, nesterov=opt["type"] == "nesterov")


def rank_slice(batch, rank, world):
    base, extra = divmod(batch, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def run(rank, world, spec, threads, port, results):
    torch.set_num_threads(threads)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(spec["seed"])
    x = torch.from_numpy(np.fromfile(spec["xFile"], dtype=np.float32).reshape(-1, spec["inputSize"]))
    y = torch.from_numpy(np.fromfile(spec["yFile"], dtype=np.int64))
    model = nn.parallel.DistributedDataParallel(build_model(spec))
    optimizer = build_optimizer(spec, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    batch, count = spec["batchSize"], x.shape[0]
    per_epoch = count // batch
    start, end = rank_slice(batch, rank, world)

    def step(index):
        first = (index % per_epoch) * batch
        xs, ys = x[first + start : first + end], y[first + start : first + end]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs), ys)
        loss.backward()
        optimizer.step()
        return loss

    for index in range(spec["warmupSteps"]):
        step(index)
    dist.barrier()
    began = time.perf_counter()
    loss = None
    for index in range(spec["steps"]):
        loss = step(spec["warmupSteps"] + index)
    dist.barrier()
    elapsed = time.perf_counter() - began
    results[rank] = (elapsed, float(loss.item()))
    dist.destroy_process_group()


def main():
    spec = json.loads(sys.argv[1])
    world = spec["workers"]
    threads = max(1, (os.cpu_count() or 1) // world)
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(run, args=(world, spec, threads, spec["port"], results), nprocs=world, join=True)
    elapsed = max(results[r][0] for r in range(world))
    samples = spec["steps"] * spec["batchSize"]
    print(json.dumps({
        "event": "done",
        "workers": world,
        "threads": threads,
        "samplesPerSecond": samples / elapsed,
        "meanStepMs": 1000 * elapsed / spec["steps"],
        "finalLoss": results[0][1],
        "torch": torch.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
