"""Is a faster JSON codec worth it for envelopes? pydantic-core's own JSON against orjson, per event.

    python -m bench.codec --events 20000

Decoding is what a consumer does with every message it handles (`EventRegistry.decode`: the
envelope, then its payload model); encoding is what a stage does with every event it publishes
(`Envelope.to_bytes`). pydantic stays the schema either way: the orjson variants parse or dump
with orjson and validate or build with the same models. orjson is not a dependency of darkroom;
install it to compare (`pip install orjson`), else only the current codec is measured.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from pipeline.contracts.events import FILE_UPLOADED, FileUploaded, default_registry
from pipeline.envelope import Envelope, build_envelope


def _envelopes(count: int) -> list[Envelope]:
    out = []
    for i in range(count):
        payload = FileUploaded(file_id=f"photo-{i:06d}", shoot_id="shoot-2026-05", bucket="darkroom",
                               key=f"originals/shoots/shoot-2026-05/photo-{i:06d}.jpg", size=6_500_000 + i, etag=f"e{i}")
        out.append(build_envelope(FILE_UPLOADED, "1.0.0", payload, subject=payload.file_id, producer="ingest",
                                  event_id=f"ev-{i}"))
    return out


def _per_event_us(work: Callable[[], object], count: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best * 1e6 / count


def measure(count: int) -> dict[str, float]:
    """Microseconds per event of each way (best of 5 passes over `count` envelopes)."""
    registry = default_registry()
    envelopes = _envelopes(count)
    bodies = [e.to_bytes() for e in envelopes]
    spec = registry.spec(FILE_UPLOADED, 1)
    out = {
        "decode: pydantic validate_json (today)": _per_event_us(lambda: [registry.decode(b) for b in bodies], count),
        "encode: pydantic dump_json (today)": _per_event_us(lambda: [e.to_bytes() for e in envelopes], count),
    }
    try:
        import orjson
    except ImportError:
        return out

    def orjson_decode() -> None:
        for body in bodies:
            envelope = Envelope.model_validate(orjson.loads(body))
            spec.model.model_validate(envelope.data)

    out["decode: orjson.loads + pydantic validate"] = _per_event_us(orjson_decode, count)
    out["encode: pydantic dump + orjson.dumps"] = _per_event_us(
        lambda: [orjson.dumps(e.model_dump(mode="json", by_alias=True)) for e in envelopes], count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    for name, us in measure(args.events).items():
        print(f"{us:6.2f} us/event  {name}")


if __name__ == "__main__":
    main()
