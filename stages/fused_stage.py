"""Several image stages run fused in one worker: a photo's whole rendition chain from one read and one decode.

`darkroom worker resize,thumbnail,watermark` (or the fleet, which fuses by default) runs one consumer
group, `darkroom.resize+thumbnail+watermark`, that consumes `file.uploaded` and makes every rendition
of its stages that derives from the upload, directly or through another rendition of the chain:
`web` from the original, then `thumb` and `proof` from web's pixels *in memory* — no GET of web, no
second decode, no Kafka hop. Renditions whose source comes from outside the chain (a stage not
fused) are still made from that source's `file.processed`, as the unfused stage would.

It is built from the unfused stages themselves, so consumers cannot tell the difference: each fused
stage is the same `RenditionStage` (stages/rendition_stage.py) it would be alone, and the chain feeds
it the `file.processed` its parent stage just produced, as Kafka would have. Same object keys, same
deterministic event ids, causation and correlation, same headers; every `file.processed` is still
published. Two seams make it cheap, both scoped to one chain on one thread:

- the sub-stages see the store through `ChainStore`: an object the chain already wrote or read
  (web, just written) is served from memory instead of a GET;
- the makers of the sub-stages take their source's pixels from memory when the chain holds them
  (`stages.imaging.as_parent`: web's pixels, computed once, before web is encoded) instead of
  decoding the bytes they are handed. A rendition nothing derives from runs its whole transform on
  those pixels (so whatever a transform adds, a placeholder say, is there too); a parent is its
  transform's pixels step, kept, then encoded.

Siblings (thumb and proof, both from web) are made at once on two threads, so a photo's chain takes
as long as its longest branch (latency), for the same CPU (throughput).

One difference a consumer could measure: a `fit: inside` rendition derived in memory may be one pixel
wider or taller than the same rendition made apart, because libvips rounds differently after JPEG
shrink-on-load than after resampling pixels (both fit the box; `cover`/`exact` boxes and renditions
of the parent's size, as in examples/pipeline.yaml, are identical).

At least once holds as before: `handle` returns every output of the chain, and the runner commits
the `file.uploaded` only once all of them are acknowledged; a crash redoes the whole chain, which
overwrites the same keys and republishes the same ids.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyvips
from pydantic import BaseModel

from pipeline.contracts.events import (
    FILE_PROCESSED,
    FILE_UPLOADED,
    H_RENDITION,
    FileProcessed,
    FileUploaded,
    default_registry,
)
from pipeline.contracts.renditions import ORIGINAL, RenditionGraph, load_rendition_graph
from pipeline.contracts.topics import FILES
from pipeline.envelope import H_EVENT_TYPE, H_TRACEPARENT, headers_dict
from pipeline.errors import ErrorKind
from pipeline.fusion import fused_name
from pipeline.publisher import Outgoing
from pipeline.registry import Event, EventRegistry
from pipeline.settings import Settings
from pipeline.stage import EventStage
from stages.image_stages import IMAGE_STAGES, BindContext, BoundRendition, bound_renditions, capture_facts
from stages.imaging import ImageLimits, Rendition, as_parent, configure_vips, encode, vips_errors
from stages.rendition_stage import RenditionMaker, RenditionStage
from storage import ObjectInfo, ObjectStore, open_store

_UPLOADED = FILE_UPLOADED.encode()
_PROCESSED = FILE_PROCESSED.encode()


@dataclass
class _ChainState:
    """What one chain (one consumed event) holds in memory: objects by key, parent pixels by rendition name."""

    objects: dict[str, bytes] = field(default_factory=dict)
    pixels: dict[str, pyvips.Image] = field(default_factory=dict)
    # Keep what is read, not only what is written: only when several sub-stages read the consumed source
    # (a partial fusion: thumbnail and watermark both from web). Else an original of 13 MB would stay
    # in memory until the chain ends, for nobody (peak RSS, bench/RESULTS.md).
    keep_reads: bool = False


class _Chain:
    """The chain being made, in a context variable: the thread running a chain and the threads it hands
    children to (with its context) see the same state; other threads, and code outside a chain, none."""

    def __init__(self) -> None:
        self._current: ContextVar[_ChainState | None] = ContextVar(f"fused-chain-{id(self)}", default=None)

    @property
    def state(self) -> _ChainState | None:
        return self._current.get()

    @contextmanager
    def run(self, keep_reads: bool = False) -> Iterator[None]:
        # The pixels of a photo must not outlive its chain (memory) nor leak into the next one.
        token = self._current.set(_ChainState(keep_reads=keep_reads))
        try:
            yield
        finally:
            self._current.reset(token)


class ChainStore:
    """The object store as a fused chain's sub-stages see it: reads of what the chain read or wrote come from memory."""

    def __init__(self, store: ObjectStore, chain: _Chain) -> None:
        self._store = store
        self._chain = chain

    @property
    def bucket(self) -> str:
        return self._store.bucket

    def get(self, key: str) -> bytes:
        state = self._chain.state
        if state is not None and key in state.objects:
            return state.objects[key]
        data = self._store.get(key)
        if state is not None and state.keep_reads:
            state.objects[key] = data
        return data

    def put(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> ObjectInfo:
        info = self._store.put(key, data, *args, **kwargs)
        state = self._chain.state
        if state is not None:
            state.objects[key] = data
        return info

    def __getattr__(self, name: str) -> Any:  # head, exists, list, delete, presign_get, ping, …: the store's own
        return getattr(self._store, name)


class FusedChain:
    """The renditions of a set of image stages, bound, with parents kept in memory for their in-chain children.

    `makers(stage)` are drop-in `RenditionMaker`s for that stage's `RenditionStage`; inside `run()`
    they take their source's pixels from memory when the chain made it, else decode the bytes they
    get. `make_all` makes the whole chain from an original in this process (the compute floor).
    """

    def __init__(self, graph: RenditionGraph, bound: Mapping[str, Mapping[str, BoundRendition]]) -> None:
        self.graph = graph
        self.stages = tuple(bound)
        self._bound = {name: b for per_stage in bound.values() for name, b in per_stage.items()}
        made = set(self._bound)
        # Renditions whose pixels children of the chain need: computed once, kept until the chain ends.
        self.parents = {spec.source for name, spec in graph.renditions.items() if name in made} & made
        # Sources the chain needs from outside: the upload, or renditions of stages that are not fused.
        self.external_sources = {graph.renditions[name].source for name in made} - made
        # External sources that renditions of more than one stage read: worth keeping once read.
        self.shared_sources = {src for src in self.external_sources
                               if len({graph.renditions[n].stage for n in made if graph.renditions[n].source == src}) > 1}
        self._chain = _Chain()

    @contextmanager
    def run(self, source: str = ORIGINAL) -> Iterator[None]:
        """One chain from `source`: parents and written objects kept in memory until it ends."""
        with self._chain.run(keep_reads=source in self.shared_sources):
            yield

    def store(self, store: ObjectStore) -> ChainStore:
        """`store` with this chain's read-your-writes from memory."""
        return ChainStore(store, self._chain)

    def makers(self, stage: str) -> dict[str, RenditionMaker]:
        """The makers of `stage`'s renditions, aware of the chain's parents in memory."""
        return {name: self._maker(name) for name, spec in self.graph.for_stage(stage).items() if name in self._bound}

    def _maker(self, name: str) -> RenditionMaker:
        bound, spec = self._bound[name], self.graph.renditions[name]
        chain, is_parent = self._chain, name in self.parents

        def make(data: bytes) -> Rendition:
            state = chain.state
            parent = state.pixels.get(spec.source) if state is not None else None
            source = parent if parent is not None else data
            if not is_parent or state is None:
                return bound.make(source)  # the whole transform (with whatever it adds, e.g. a placeholder)
            pixels = bound.render(source)
            with vips_errors(pixels.what):  # pixels are computed here: a corrupt upload fails here, as ImageRejected
                image = as_parent(pixels.image, keep_copyright=spec.keep_copyright)
            state.pixels[name] = image
            return encode(image, bound.output, what=pixels.what)

        return make

    def make_all(self, original: bytes) -> dict[str, Rendition]:
        """Every rendition of the chain that derives from `original`, in this process: no storage, no Kafka."""
        made: dict[str, Rendition] = {}
        makers = {name: self._maker(name) for name in self._bound}
        with self.run():
            pending = deque(name for name, spec in self.graph.renditions.items()
                            if name in makers and spec.source == ORIGINAL)
            while pending:
                name = pending.popleft()
                source = self.graph.renditions[name].source
                made[name] = makers[name](original if source == ORIGINAL else made[source].data)
                pending.extend(n for n in self.graph.made_from(name) if n in makers)
        return made


class FusedRenditionStage(EventStage):
    """Image stages run as one: the chain from each consumed source to every rendition derived from it."""

    topics = (FILES,)

    def __init__(self, registry: EventRegistry, store: ObjectStore, chain: FusedChain,
                 sub_stages: Sequence[RenditionStage]) -> None:
        self.name = fused_name([s.name for s in sub_stages])
        self.event_types = frozenset().union(*(s.event_types for s in sub_stages))
        super().__init__(registry)
        self._store = store
        self._chain = chain
        self._subs = list(sub_stages)
        self._source_headers = {src.encode() for src in chain.external_sources if src != ORIGINAL}
        self._parent_headers = {name.encode() for name in chain.parents}
        self._children: ThreadPoolExecutor | None = None  # made on first use: siblings run at once

    @property
    def sources(self) -> set[str]:
        """What the fused stage consumes: the upload and/or renditions made outside the chain."""
        return set(self._chain.external_sources)

    def health_checks(self) -> dict[str, Callable[[], None]]:
        return {"storage": self._store.ping}

    def accepts(self, headers: Mapping[str, bytes]) -> bool:
        event_type = headers.get(H_EVENT_TYPE)
        if event_type is None:
            return True  # decoding will dead-letter it with a reason
        if event_type == _UPLOADED:
            return ORIGINAL in self._chain.external_sources
        if event_type == _PROCESSED:
            rendition = headers.get(H_RENDITION)
            # Renditions made inside the chain are never consumed again: their children are made already.
            return rendition is None or rendition in self._source_headers
        return any(s.accepts(headers) for s in self._subs)

    def handle(self, event: Event[BaseModel], traceparent: str | None) -> list[Outgoing]:
        payload = event.payload
        if isinstance(payload, FileProcessed) and payload.rendition not in self._chain.external_sources:
            return []  # an in-chain rendition from a producer without the header: its children are made already
        if not isinstance(payload, FileUploaded | FileProcessed):
            # Any other event a sub-stage handles (none today) goes to each sub-stage that takes it.
            return [m for s in self._subs if event.envelope.event_type in s.event_types for m in s.handle(event, traceparent)]
        out: list[Outgoing] = []
        with self._chain.run(ORIGINAL if isinstance(payload, FileUploaded) else payload.rendition):
            pending: deque[tuple[Event[BaseModel], str | None]] = deque([(event, traceparent)])
            while pending:
                current, parent_trace = pending.popleft()
                for message in self._siblings(current, parent_trace):
                    out.append(message)
                    headers = headers_dict(message.headers)
                    if headers.get(H_RENDITION) in self._parent_headers:
                        # What Kafka would have delivered to the child stages, built by the framework.
                        trace = headers.get(H_TRACEPARENT)
                        pending.append((self.registry.decode(message.value), trace.decode() if trace else None))
        return out

    def _siblings(self, event: Event[BaseModel], traceparent: str | None) -> list[Outgoing]:
        """The outputs of every sub-stage that derives from `event`'s rendition, in stage order.

        Siblings (thumb and proof from web) run at once: the first on this thread, the others on the
        stage's child threads with this chain's context (libvips releases the GIL), so a photo's chain
        takes the time of its longest branch, not the sum. Their work is the same.
        """
        payload = event.payload
        source = ORIGINAL if isinstance(payload, FileUploaded) else getattr(payload, "rendition", None)
        working = [s for s in self._subs if source in s.sources]
        if len(working) <= 1:
            return [m for s in working for m in s.handle(event, traceparent)]
        if self._children is None:
            self._children = ThreadPoolExecutor(max_workers=len(self._subs), thread_name_prefix=f"{self.name}-child")
        others = [self._children.submit(copy_context().run, s.handle, event, traceparent) for s in working[1:]]
        first = working[0].handle(event, traceparent)
        return first + [m for future in others for m in future.result()]

    def classify(self, exc: BaseException) -> ErrorKind:
        return self._subs[0].classify(exc) if self._subs else super().classify(exc)

    def close(self) -> None:
        if self._children is not None:
            self._children.shutdown(wait=False, cancel_futures=True)


def fused_image_stage(
    stages: Sequence[str], registry: EventRegistry, store: ObjectStore, graph: RenditionGraph, limits: ImageLimits,
    producer: str, base_dir: Path = Path("."),
) -> FusedRenditionStage:
    """`stages` of `graph` fused into one stage, their transforms bound from the table."""
    unknown = sorted(set(stages) - set(IMAGE_STAGES))
    if unknown:
        raise ValueError(f"cannot fuse {', '.join(unknown)}: only image stages fuse ({', '.join(IMAGE_STAGES)})")
    ordered = [s for s in IMAGE_STAGES if s in set(stages)]
    ctx = BindContext(limits, store, base_dir)
    chain = FusedChain(graph, {s: bound_renditions(s, graph, ctx) for s in ordered})
    chain_store = chain.store(store)
    # The same capture facts as an unfused stage: read from the original's header by the stages that read it.
    facts = partial(capture_facts, limits=limits, gps=graph.facts.gps)
    subs = [RenditionStage(s, registry, chain_store, graph, chain.makers(s), producer, facts=facts)  # type: ignore[arg-type]
            for s in ordered]
    return FusedRenditionStage(registry, store, chain, subs)


def build_fused_stage(stages: Sequence[str], settings: Settings) -> FusedRenditionStage:
    """`stages` fused, wired to the configured store, limits and pipeline file (`darkroom worker resize,thumbnail,…`)."""
    configure_vips(settings.imaging.vips_concurrency)
    graph = load_rendition_graph(settings.pipeline_file)
    base_dir = settings.pipeline_file.parent if settings.pipeline_file else Path.cwd()
    return fused_image_stage(stages, default_registry(), open_store(settings.storage), graph,
                             ImageLimits.from_settings(settings.imaging), settings.producer_name, base_dir)


class ImageFusion:
    """The `darkroom.fusions` entry point of the image stages: which stages fuse, and how the fused stage is built."""

    stages = frozenset(IMAGE_STAGES)

    def build(self, stages: Sequence[str], settings: Settings) -> FusedRenditionStage:
        return build_fused_stage(stages, settings)


IMAGE_FUSION = ImageFusion()
