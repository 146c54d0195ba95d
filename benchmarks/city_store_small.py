"""The city storing routine (one-summary) batches: time per CityStore.accept, by page size.

    python benchmarks/city_store_small.py [--page-size 16384] [--batches 3000]

Each batch is decoded as the city decodes it, then stored (with the city's WAL
checkpoint thread running), one a millisecond; prints p50, p99 and max. Run it once per
page size to compare (the city uses 16 KiB pages; SQLite's default is 4 KiB).
"""

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge_drain import C, summary  # noqa: E402

import servicekit.sqlite  # noqa: E402
import simulators.city.store as city_store  # noqa: E402
from cloud_bridge.privacy import to_city  # noqa: E402
from contract.city import Batch  # noqa: E402
from contract.fastcodec import decode_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--page-size", type=int, default=16384)
    ap.add_argument("--batches", type=int, default=3000)
    args = ap.parse_args()
    opener = servicekit.sqlite.open_database
    city_store.open_database = lambda path, schema, **kw: opener(path, schema, **{**kw, "page_size": args.page_size})
    store = city_store.CityStore(Path(tempfile.mkdtemp(prefix="mb-bench-store-")) / "city.sqlite3")
    batches = [decode_batch(Batch(key=str(uuid.uuid4()), community=C, sent_at=time.time(),
                                  summaries=(to_city(summary(i)),)).model_dump_json().encode())
               for i in range(args.batches)]
    took = []
    for key, community, summaries in batches:
        t = time.perf_counter()
        store.accept(key, community, summaries)
        took.append(time.perf_counter() - t)
        time.sleep(0.001)
    store.close()
    took.sort()
    print(f"page size {args.page_size}: {len(took)} one-summary batches stored, p50 {took[len(took) // 2] * 1e3:.2f} ms, "
          f"p99 {took[int(len(took) * 0.99)] * 1e3:.2f} ms, max {took[-1] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
