"""Train over a PatchStream with DistributedDataParallel, one process per accelerator (or CPU).

    torchrun --standalone --nproc_per_node=2 docs/examples/train_ddp.py s3://bucket/cube.zarr
    python docs/examples/train_ddp.py s3://bucket/cube.zarr --spawn 2     # torch.multiprocessing.spawn

Credentials, region, endpoint and CA bundle come from the standard AWS chain
(environment, profiles, SSO, credential_process, roles; ``AWS_CA_BUNDLE``).
Every rank builds the same stream; rank and world size come from the process
group and are handed to the DataLoader workers. ``--steps`` stops after that many
steps and saves a checkpoint whose ``stream`` entry resumes the exact position
(``--resume``). ``--out`` writes what each rank saw as ``rank-<r>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from spectralearth.platform.stream import PatchStream


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cube", help="cube URL (s3://bucket/prefix or a local path)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    ap.add_argument("--mp-context", default=None, help="DataLoader multiprocessing context (fork, spawn, forkserver)")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps and checkpoint (0: run on)")
    ap.add_argument("--checkpoint", default="checkpoint.pt")
    ap.add_argument("--resume", default=None, help="checkpoint to resume from")
    ap.add_argument("--out", default=None, help="folder for rank-<r>.json (views seen, final weights checksum)")
    ap.add_argument("--spawn", type=int, default=0, help="start this many ranks with torch.multiprocessing.spawn")
    return ap.parse_args(argv)


def train(args: argparse.Namespace, rank: int | None = None, world: int | None = None) -> None:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if rank is None:  # torchrun: rank and world size from its environment
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, rank=rank, world_size=world)
    rank = dist.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}") if backend == "nccl" else torch.device("cpu")
    stream = PatchStream(args.cube, mode="single", batch_size=args.batch_size, seed=0, policy="pad")
    loader = stream.loader(num_workers=args.workers, pin_memory=device.type == "cuda",
                           multiprocessing_context=args.mp_context if args.workers else None)
    norm = stream.normalizer().to(device)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = nn.Sequential(nn.Conv2d(stream.index.n_bands, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 1)).to(device)
    model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    start_epoch = 0
    if args.resume:
        ckpt = torch.load(args.resume, map_location=device)
        model.module.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["stream"])
        start_epoch = ckpt["stream"]["epoch"]
    seen, losses, steps = [], [], 0
    for epoch in range(start_epoch, args.epochs):
        stream.set_epoch(epoch)
        for batch in loader:
            x = norm(batch["image"].to(device, non_blocking=True))
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen.extend(batch["patch"].tolist())
            losses.append(float(loss))
            steps += 1
            if args.steps and steps >= args.steps:
                break
        if args.steps and steps >= args.steps:
            if rank == 0:  # the stream state is the same on every rank
                torch.save({"model": model.module.state_dict(), "optimizer": opt.state_dict(),
                            "stream": loader.state_dict()}, args.checkpoint)
            break
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, f"rank-{rank}.json").write_text(json.dumps(
            {"rank": rank, "world_size": dist.get_world_size(), "patches": seen, "losses": losses,
             "weights_checksum": checksum, "stream_state": loader.state_dict()}))
    dist.barrier()
    dist.destroy_process_group()


def _spawned(rank: int, world: int, args: argparse.Namespace) -> None:
    os.environ.pop("RANK", None)  # as under mp.spawn: only the process group knows the rank
    os.environ.pop("WORLD_SIZE", None)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    train(args, rank, world)


def main(argv=None) -> None:
    args = parse(argv)
    if args.spawn:
        import socket

        import torch.multiprocessing as mp

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
        mp.spawn(_spawned, args=(args.spawn, args), nprocs=args.spawn, join=True)
    else:
        train(args)


if __name__ == "__main__":
    main()
