"""``spectralearth stream-bench``: how fast a cube streams from where it is stored."""

from __future__ import annotations

import argparse
import json

from . import _common

DESCRIPTION = """\
Stream a committed patch cube through a torch DataLoader, exactly as training
would, and print samples/s, MB/s (decoded int16), time to the first batch and
samples per CPU-second (the per-core figure used to size data-loading nodes).

Examples:
  spectralearth stream-bench /data/cube
  spectralearth stream-bench s3://bucket/cube --workers 4 --mode pair --batches 200

S3 credentials come from the AWS environment; the endpoint from
SPECTRALEARTH_S3_ENDPOINT. Exit code 0 on success, 1 when reading failed.
"""


def register(sub) -> None:
    p = sub.add_parser("stream-bench", help="measure streaming throughput of a cube",
                       description=DESCRIPTION, formatter_class=_common.HelpFormatter)
    p.add_argument("cube", metavar="CUBE_URL", help="cube URL (local path or s3://bucket/prefix)")
    p.add_argument("--mode", choices=("single", "pair"), default="single", help="sample mode")
    p.add_argument("--every-view", action="store_true", help="single mode: every view once per epoch")
    p.add_argument("--batch-size", type=int, default=32, help="samples per batch")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (0: main process)")
    p.add_argument("--io-threads", type=int, default=8, help="concurrent chunk requests per worker")
    p.add_argument("--batches", type=int, default=None, help="stop after this many batches (default: one epoch)")
    p.add_argument("--backend", choices=("auto", "local", "obstore", "fsspec"), default="auto", help="chunk reader")
    p.add_argument("--context", choices=("fork", "spawn", "forkserver"), default=None,
                   help="multiprocessing start method of the workers")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _common.add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectralearth.platform.reader import StreamReadError
    from spectralearth.platform.storage import redact
    from spectralearth.platform.stream import PatchStream
    from spectralearth.platform.throughput import measure_throughput

    stream = PatchStream(args.cube, mode=args.mode, every_view=args.every_view, batch_size=args.batch_size,
                         io_threads=args.io_threads, backend=args.backend,
                         storage_options=_common.storage_options_from_args(args))
    try:
        result = measure_throughput(stream, num_workers=args.workers, max_batches=args.batches,
                                    multiprocessing_context=args.context)
    except StreamReadError as exc:
        print(f"error: {exc}")
        return 1
    if args.json:
        print(json.dumps({"cube": redact(args.cube), **result.as_dict()}, indent=2))
        return 0
    _common.print_summary(f"stream-bench {redact(args.cube)}", {
        "samples": result.samples,
        "samples/s": f"{result.samples_per_s:.1f}",
        "MB/s": f"{result.mb_per_s:.1f}",
        "time to first batch": f"{result.first_batch_s:.2f} s",
        "samples per CPU-second": f"{result.samples_per_cpu_s:.1f}",
        "workers x io threads": f"{args.workers} x {args.io_threads}",
    })
    return 0
