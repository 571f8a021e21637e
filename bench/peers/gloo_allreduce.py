"""One rank of gloo's all-reduce for `ringtrain bench allreduce --peer gloo`.

torch.distributed over gloo, timed exactly as ringtrain's `bench allreduce-rank` times its ring:
per size, `warmup` untimed then `iters` timed iterations (the parent scales both per size the
same way it does for ringtrain); per iteration, fill a known pattern, a one-float all-reduce as a
barrier, then the timed all-reduce, a second barrier, then a check of every reduced value. Rank r holds
(r + 1)·p(i + iteration) with p cycling through −8..8, so the exact sum is p·N(N+1)/2 and float32
gets it exactly.

The parent starts one process per rank (so each rank can run in its own network namespace) with
one JSON argument:
{"rank", "worldSize", "masterAddr", "masterPort", "threads" (0 = torch's default), "ifname"
(GLOO_SOCKET_IFNAME, or null), "sizes": [{"bytes", "warmup", "iters"}], "timeoutS"}
and reads JSON lines: {"event": "result", "bytes", "seconds": [...], "verified", "maxAbsError"}
per size, then {"event": "done", "threads", "torch"}.

Only a peer's figures: ringtrain never asserts them.
"""
import datetime
import json
import os
import sys
import time

PATTERN_HALF = 8
PATTERN_PERIOD = 2 * PATTERN_HALF + 1


def pattern(count, iteration):
    import numpy as np

    return ((np.arange(count, dtype=np.int64) + iteration) % PATTERN_PERIOD - PATTERN_HALF).astype(np.float32)


def main():
    spec = json.loads(sys.argv[1])
    if spec.get("ifname"):
        os.environ["GLOO_SOCKET_IFNAME"] = spec["ifname"]
    import numpy as np
    import torch
    import torch.distributed as dist

    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    rank, world = spec["rank"], spec["worldSize"]
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{spec['masterAddr']}:{spec['masterPort']}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=spec["timeoutS"]),
    )
    barrier = torch.zeros(1, dtype=torch.float32)
    factor = world * (world + 1) / 2
    for size in spec["sizes"]:
        count = size["bytes"] // 4
        buffer = torch.empty(count, dtype=torch.float32)
        seconds, verified, worst = [], True, 0.0
        for iteration in range(size["warmup"] + size["iters"]):
            p = pattern(count, iteration)
            buffer.copy_(torch.from_numpy(p * (rank + 1)))
            dist.all_reduce(barrier)
            began = time.perf_counter()
            dist.all_reduce(buffer)
            elapsed = time.perf_counter() - began
            dist.all_reduce(barrier)  # no rank checks while another is still in its timed all-reduce
            error = float(np.max(np.abs(buffer.numpy() - p * factor))) if count > 0 else 0.0
            worst = max(worst, error)
            if not error == 0.0:
                verified = False
            if iteration >= size["warmup"]:
                seconds.append(elapsed)
        print(json.dumps({"event": "result", "bytes": size["bytes"], "seconds": seconds, "verified": verified,
                          "maxAbsError": worst}), flush=True)
    dist.barrier()
    print(json.dumps({"event": "done", "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
