"""Prefix/KV-affinity replica choice: pick the replica with the lowest estimated time to first token.

The router keeps, per replica, a *model* of that replica built only from what a gateway knows: the requests it
sent there (their prefix block hashes and input sizes, in order) and the completions it has observed.

- **Cache model.** An LRU set of block hashes per replica, updated when a request is sent. A FIFO server starts
  requests in the order it received them, so when a new request starts, every request sent before it has
  started: the modelled cache state at its start is exactly the state after the requests already sent.
- **Queue model.** The requests sent and not yet observed done, FIFO. Their prefill time is known (uncached
  input / prefill rate, the cache model gives the hit); their decode time is not (output length is known only
  at completion), so it is estimated from completed requests (completion - start - prefill), per prompt
  template: the request's first block, shrunk towards the overall mean (``decode_by_template``). The prefill
  rate is given (trace model) or, in the gateway, learned the same way: the slope of observed service time on
  uncached tokens (``learn_prefill_rate``). Another gateway instance's call is heard done one event delay late
  (``lag_s``): predicted done less than that ago, it counts as done rather than overdue.
- **Load it did not send.** Where the replicas' engines report the requests they hold (``engine_load``,
  :class:`~sovrouter.adapters.engine_load.EngineReports`), those beyond the modelled queue (other clients, or
  other gateway instances without shared events) count as requests of mean service time ahead in the queue.

Cost of sending request ``q`` to replica ``r`` (seconds), with ``P = uncached_prefill(q, r)`` and
``S = P + E[decode]`` the work it adds there::

    cost(r) = wait(r) + P                              # q's own estimated time to first token
            + lam * S * (wait(r) + S) / (1 - rho)      # queueing externality: delay imposed on later requests
            + evictions(q, r) * eviction_cost          # cache pollution: future prefill the evicted blocks cost
            + compute_price * P                        # the operator's price of prefill compute
            + tail * wait(r)**2 / mean_service         # long-wait penalty (convex in the wait)

- *Queueing externality* (M/G/1): the ``S`` seconds of work are paid by every request that arrives (rate
  ``lam`` per replica) while that replica works off its backlog ``wait(r) + S``, stretched by ``1 / (1 - rho)``.
  ``lam`` and ``rho`` are measured online from the router's own sends over a recent window.
- *Cache pollution*: the uncached blocks ``q`` inserts into a full cache evict as many blocks. Their worth is
  measured online with a ghost list per replica (blocks recently evicted): tokens later missed only because
  the block had been evicted, divided by the number of evictions (decayed over the window).
- *Compute price*: seconds of TTFT one replica-second of prefill is worth. Latency alone (price 0) moves
  conversations off their cached replica whenever that is a little faster for the request at hand; the saving
  is small (~4% mean TTFT on the dev trace) and costs ~5 points of hit rate, i.e. more accelerator time per
  request. The default (10) keeps the prefill compute at the level of SGLang's cache-aware router (with the
  long-wait penalty on, 1.3 points of hit rate below it on the dev trace).
- *Long-wait penalty* (``tail``, default 0.3; 0 turns it off): ``mean_service`` is the mean estimated service
  time of the router's sends over the recent window. It keeps the compute price from queueing a request behind
  a long backlog to save prefill. It improves p99 TTFT on 9 of 10 variants of the two traces (equal on the
  tenth) and mean TTFT on most, and costs 1.5-1.7 points of hit rate (of the unbounded bound) on the dev
  conversation trace, i.e. more prefill compute (bench/prefix_options.py). A trade, made the default because
  the shape of the served trace is unknown: where it is conversation-like the hit criterion fails with or
  without it and TTFT gains, where it is synthetic-like (large cold prompts make the tail) it keeps the hit
  rate and wins p99.

Option, off by default (bench/prefix_options.py: not a gain on every trace): ``age_aware`` prices each
eviction by the idle age of the block it would evict on that replica (value per age bucket measured with the
ghost lists).

Costs within ``tie_s`` (10 ms, below anything the model resolves) are ties, broken towards the replica with the
least recent work (exponentially decayed estimated busy time), which keeps busy time balanced at low load.

:class:`PrefixAffinityRouter` works on block-hash sequences and explicit times (trace evaluation);
:class:`~sovrouter.reuse.prefix_chooser.PrefixAffinityChooser` wraps it as a
:class:`~sovrouter.adapters.replicas.ReplicaChooser` for the HTTP adapter, hashing the rendered messages into
chained blocks of whitespace tokens.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence

from sovrouter.errors import InvalidRequestError
from sovrouter.reuse.estimators import PrefillRateEstimator, TemplateDecodeEstimator
from sovrouter.reuse.prefix_sim import BLOCK_TOKENS, cached_tokens

AGE_EDGES_S = (15.0, 30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0)
"""Idle-age buckets (seconds since a block was last sent) for the age-aware eviction value."""


@dataclasses.dataclass(frozen=True, slots=True)
class AffinitySettings:
    capacity_blocks: int = 4096
    prefill_rate: float = 10_000.0
    decode_rate: float = 1_000.0
    block_tokens: int = BLOCK_TOKENS
    prior_decode_s: float = 0.25
    """Decode time assumed before any completion is observed (weight of one observation)."""
    externality: float = 1.0
    """Weight of the queueing-externality term (1 = the M/G/1 estimate; 0 = greedy own-TTFT)."""
    compute_price: float = 10.0
    """Seconds of TTFT one replica-second of prefill is worth (the operator's price of compute; 0 = latency only).

    10 keeps the prefill compute spent (the hit rate) near the level of SGLang's cache-aware router (within 1
    point with ``tail=0``, 0.8-2.1 points below with the default ``tail``) while TTFT stays ~20% lower; 0 buys
    ~2-4% lower mean TTFT for ~5-7 points less hit rate (bench/prefix_affinity.py)."""
    pollution: float = 1.0
    """Weight of the cache-pollution term (1 = the measured cost of an eviction; 0 = ignore)."""
    age_aware: bool = False
    """Price each eviction by the idle age of the block it would evict on that replica (the value of an
    eviction per age bucket is measured online with the ghost lists) instead of one mean price for every
    eviction anywhere. Off: on top of the default it moves hit rate by -1.2 to +0.3 points and p99 TTFT by 0 to
    -1.3 points across the dev and synthetic variants (bench/prefix_options.py), no consistent gain for ~50%
    more routing time."""
    tail: float = 0.3
    """Weight of a convex wait penalty ``tail * wait**2 / mean service`` (mean over the recent window): long
    waits cost more than linearly. 0.3 (the default) improves p99 TTFT on 9 of 10 dev and synthetic variants
    (by up to ~5 points; equal on the tenth) and costs 1.5-1.7 points of hit rate on the dev conversation trace
    (bench/prefix_options.py); 0 turns it off (the earlier default)."""
    decode_by_template: bool = True
    """Predict each request's decode time by its prompt template (its first block: the system prompt or tool
    preamble), learned from completions and shrunk towards the overall mean, instead of one mean for every
    request. Tool calls answered in a few tokens and chat replies of hundreds share a deployment; one mean makes
    replicas serving many short calls look busier than they are, so long work piles up elsewhere (skew)."""
    learn_prefill_rate: bool = False
    """Learn the seconds per uncached prompt token from completions (least squares of each observed service time
    on its uncached tokens, older observations forgotten), clamped to at most 10x faster and 100x slower than the
    configured ``prefill_rate``, which stays the prior until 20 completions are seen. Off for the trace model (its
    rates are given); on for the gateway's chooser, whose configured rates may be far from the real servers'."""
    tie_s: float = 0.01
    instance_band_s: float = 0.1
    """Several gateway instances sharing one model (``affinity_events``): rank 0, and a lone instance, take the
    best replica; the instance of rank r > 0 takes the r-th (modulo) of the replicas within this many seconds of
    the best cost, rank 0's pick first and the others least recently busy first. Instances with the same model
    would otherwise all send new work to the same idle replica until their events reach each other (herding);
    within the band the cost difference is small, and a replica whose cached prefix saves more than the band
    stays every instance's choice. 0 turns it off (bench/prefix_multi_gateway.py)."""
    busy_tau_s: float = 300.0
    load_window_s: float = 300.0

    def __post_init__(self) -> None:
        if (self.capacity_blocks < 1 or self.block_tokens < 1
                or not all(math.isfinite(r) and r > 0 for r in (self.prefill_rate, self.decode_rate))):
            raise InvalidRequestError("affinity settings: capacity, block size and rates must be positive")
        if not (math.isfinite(self.tail) and self.tail >= 0.0):
            raise InvalidRequestError("affinity settings: tail must be a finite number >= 0")
        if not (math.isfinite(self.instance_band_s) and self.instance_band_s >= 0.0):
            raise InvalidRequestError("affinity settings: instance_band_s must be a finite number >= 0")


@dataclasses.dataclass(slots=True)
class _Pending:
    key: Hashable
    arrival_s: float
    prefill_s: float
    uncached_tokens: int = 0
    template: Hashable | None = None
    lag_s: float = 0.0  # how late this router hears of the request's completion (another instance's call)


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaEstimate:
    replica: int
    hit_tokens: int
    wait_s: float
    prefill_s: float
    cost: float

    @property
    def ttft_s(self) -> float:
        return self.wait_s + self.prefill_s


@dataclasses.dataclass(frozen=True, slots=True)
class BlockShape:
    """What the gateway knows of its blocks beyond their hashes (the trace model's blocks are all full, 512 tokens).

    ``sizes``: tokens in each block (blocks end at message boundaries, so the last one of a message is short);
    ``answer``: the block range ``[start, end)`` of the latest assistant message when a user message follows it.
    The engine generated that answer after the prompt before it and holds its KV there, so where the cached
    run reaches the answer's start, the answer counts as cached too."""

    sizes: tuple[int, ...]
    block_tokens: int
    answer: tuple[int, int] | None = None

    def tokens(self, run: int) -> int:
        return sum(self.sizes[:run])

    def weights(self) -> list[float]:
        """Each block's size in full blocks (the cache model's capacity unit)."""
        return [min(1.0, n / self.block_tokens) for n in self.sizes]

    def run(self, cache: _ValuedLRU, blocks: Sequence[int]) -> int:
        run = cache.leading_run(blocks)
        if self.answer is not None and run == self.answer[0] > 0:
            end = self.answer[1]
            run = end + cache.leading_run(blocks[end:])
        return run


class _ValuedLRU:
    """An LRU of block ids, each with a value (a send time for the cache model, an age bucket for a ghost) and a
    size in full blocks (1 unless given: a gateway block cut short at a message boundary is a fraction of one).
    ``capacity`` bounds the total size.

    Deliberately separate from ``prefix_sim.LRUBlocks``: the scoring model shares no code with the router it
    scores, so a bug in one cannot flatter the other."""

    __slots__ = ("_d", "_w", "capacity", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._d: OrderedDict[int, float] = OrderedDict()
        self._w: dict[int, float] = {}  # sizes other than 1
        self.size = 0.0

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, block: int) -> bool:
        return block in self._d

    def get(self, block: int) -> float | None:
        return self._d.get(block)

    def leading_run(self, blocks: Sequence[int]) -> int:
        d = self._d
        n = 0
        for b in blocks:
            if b not in d:
                break
            n += 1
        return n

    def put(self, items: Sequence[tuple[int, float]],
            sizes: Sequence[float] | None = None) -> list[tuple[int, float, float]]:
        """Make the items most recent in order with their values (and ``sizes``, 1 each if omitted); return the
        evicted ones (block, value, size), least recent first."""
        d, w = self._d, self._w
        for k, (b, v) in enumerate(items):
            if b in d:
                self.size -= w.pop(b, 1.0)
            size = 1.0 if sizes is None else sizes[k]
            if size != 1.0:
                w[b] = size
            self.size += size
            d[b] = v
            d.move_to_end(b)
        evicted: list[tuple[int, float, float]] = []
        while self.size > self.capacity and d:
            b, v = d.popitem(last=False)
            size = w.pop(b, 1.0)
            self.size -= size
            evicted.append((b, v, size))
        return evicted

    def tail(self, k: int) -> list[float]:
        """Values of the ``k`` least recent entries (fewer if the LRU holds fewer)."""
        out: list[float] = []
        if k <= 0:
            return out
        for v in self._d.values():
            out.append(v)
            if len(out) >= k:
                break
        return out

    def discard(self, blocks: Sequence[int]) -> None:
        for b in blocks:
            if self._d.pop(b, None) is not None:
                self.size -= self._w.pop(b, 1.0)


class _ReplicaModel:
    __slots__ = ("anchor_s", "busy", "busy_t", "cache", "foreign", "ghost", "queue")

    def __init__(self, capacity: int) -> None:
        self.cache = _ValuedLRU(capacity)  # block -> time last sent here
        self.ghost = _ValuedLRU(capacity)  # recently evicted blocks -> age bucket when evicted
        self.queue: deque[_Pending] = deque()
        self.anchor_s = 0.0  # last observed completion on this replica (the head started no earlier)
        self.busy = 0.0  # estimated service time sent here, exponentially decayed
        self.busy_t = 0.0
        self.foreign = 0  # requests the engine last reported holding beyond those modelled here

    def decayed_busy(self, now_s: float, tau_s: float) -> float:
        return self.busy * math.exp(-max(0.0, now_s - self.busy_t) / tau_s)

    def add_busy(self, now_s: float, tau_s: float, service_s: float) -> None:
        self.busy = self.decayed_busy(now_s, tau_s) + service_s
        self.busy_t = now_s

    def free_at(self, now_s: float, decode_of: Callable[[Hashable | None], float]) -> float:
        """Estimated time this replica finishes everything sent to it so far (``decode_of(template)``: the
        predicted decode time of a request of that template)."""
        t = self.anchor_s
        first = True
        for p in self.queue:
            start = max(t, p.arrival_s)
            decode_s = decode_of(p.template)
            t = start + p.prefill_s + decode_s
            if first:
                # The head is in service: if it has outlived its estimate, it still needs some decode time;
                # with no better knowledge assume the prediction again (memoryless residual). Another
                # instance's call is heard done only ``lag_s`` late: within that window of its predicted end it
                # is taken as done then, its completion event still on its way.
                if t <= now_s - p.lag_s:
                    t = now_s + decode_s
                first = False
        return t


class PrefixAffinityRouter:
    """Online replica choice over block-hash sequences; state per replica id, times given by the caller."""

    def __init__(self, settings: AffinitySettings | None = None) -> None:
        self.settings = settings or AffinitySettings()
        self._replicas: dict[Hashable, _ReplicaModel] = {}
        self._where: dict[Hashable, Hashable] = {}
        self._decode = TemplateDecodeEstimator(self.settings.prior_decode_s)
        self._rate = PrefillRateEstimator(1.0 / self.settings.prefill_rate)
        self._work: deque[tuple[float, float]] = deque()  # (sent at, estimated service s) in the window
        self._work_sum = 0.0
        nb = len(AGE_EDGES_S) + 1
        self._lost_tokens = [0.0] * nb  # per age bucket at eviction: tokens missed because it was evicted
        self._evictions = [0.0] * nb  # per age bucket: blocks evicted (both decayed)
        self._pollution_t = 0.0

    @property
    def seconds_per_token(self) -> float:
        """Prefill seconds per uncached prompt token: ``1 / prefill_rate``, or learned (``learn_prefill_rate``)."""
        if self.settings.learn_prefill_rate:
            return self._rate.seconds_per_token
        return 1.0 / self.settings.prefill_rate

    def prefill_seconds(self, tokens: float) -> float:
        """Prefill time of ``tokens`` uncached tokens (exactly ``tokens / prefill_rate`` when not learning)."""
        if self.settings.learn_prefill_rate:
            return tokens * self._rate.seconds_per_token
        return tokens / self.settings.prefill_rate

    def _decay_pollution(self, now_s: float) -> None:
        f = math.exp(-max(0.0, now_s - self._pollution_t) / self.settings.load_window_s)
        if f < 1.0:
            self._lost_tokens = [x * f for x in self._lost_tokens]
            self._evictions = [x * f for x in self._evictions]
        self._pollution_t = max(self._pollution_t, now_s)

    @property
    def eviction_cost_tokens(self) -> float:
        """Estimated future prefill tokens one more eviction costs (misses on evicted blocks / evictions)."""
        ev = sum(self._evictions)
        return sum(self._lost_tokens) / ev if ev >= 1.0 else 0.0

    def eviction_cost_by_age(self) -> list[float]:
        """Estimated future prefill tokens lost by evicting a block of each idle-age bucket.

        Measured per bucket (ghost misses / evictions); made non-increasing in age (a block idle longer is
        never worth more), so buckets the current traffic does not evict from borrow the older ones' value.
        """
        out = [0.0] * len(self._evictions)
        running = 0.0
        for b in range(len(out) - 1, -1, -1):
            if self._evictions[b] >= 1.0:
                running = max(running, self._lost_tokens[b] / self._evictions[b])
            out[b] = running
        return out

    def _template(self, blocks: Sequence[int]) -> int | None:
        return blocks[0] if blocks and self.settings.decode_by_template else None

    def _model(self, replica: Hashable) -> _ReplicaModel:
        m = self._replicas.get(replica)
        if m is None:
            m = _ReplicaModel(self.settings.capacity_blocks)
            self._replicas[replica] = m
        return m

    def _expire_work(self, now_s: float) -> None:
        while self._work and self._work[0][0] < now_s - self.settings.load_window_s:
            self._work_sum -= self._work.popleft()[1]

    def _load(self, now_s: float, n_replicas: int) -> tuple[float, float]:
        """(per-replica arrival rate /s, utilisation) over the recent window, from the router's own sends."""
        s = self.settings
        self._expire_work(now_s)
        if not self._work:
            return 0.0, 0.0
        span = max(1.0, min(s.load_window_s, now_s - self._work[0][0]))
        n = max(1, n_replicas)
        return len(self._work) / (span * n), min(0.95, self._work_sum / (span * n))

    def estimate(self, blocks: Sequence[int], input_tokens: int, now_s: float,
                 replicas: Sequence[Hashable], shape: BlockShape | None = None) -> list[ReplicaEstimate]:
        s = self.settings
        decode = self._decode.predict(self._template(blocks))
        decode_of = self._decode.predict
        lam, rho = self._load(now_s, len(replicas))
        self._decay_pollution(now_s)
        per_evict_s = self.prefill_seconds(s.pollution * self.eviction_cost_tokens)
        by_age = [self.prefill_seconds(s.pollution * v) for v in self.eviction_cost_by_age()] if s.age_aware else []
        mean_service = max(0.05, self._work_sum / len(self._work)) if self._work else 1.0
        weights = shape.weights() if shape is not None else []
        out: list[ReplicaEstimate] = []
        for i, rid in enumerate(replicas):
            m = self._model(rid)
            if shape is None:
                run = m.cache.leading_run(blocks)
                hit = cached_tokens(run, input_tokens, s.block_tokens)
                inserts: float = max(0, len(blocks) - run - (m.cache.capacity - len(m.cache)))
            else:
                run = shape.run(m.cache, blocks)
                hit = min(input_tokens, shape.tokens(run))
                inserts = max(0.0, sum(weights[run:]) - (m.cache.capacity - m.cache.size))
            wait = max(0.0, m.free_at(now_s, decode_of) - now_s) + m.foreign * mean_service
            if s.age_aware:
                pollution = sum(by_age[bisect_right(AGE_EDGES_S, now_s - t)]
                                for t in m.cache.tail(math.ceil(inserts)))
            else:
                pollution = inserts * per_evict_s
            prefill = self.prefill_seconds(input_tokens - hit)
            service = prefill + decode
            cost = (wait + (1.0 + s.compute_price) * prefill
                    + s.externality * lam * service * (wait + service) / (1.0 - rho) + pollution
                    + s.tail * wait * wait / mean_service)
            out.append(ReplicaEstimate(i, hit, wait, prefill, cost if math.isfinite(cost) else math.inf))
        return out

    def choose(self, blocks: Sequence[int], input_tokens: int, now_s: float,
               replicas: Sequence[Hashable], rank: int = 0, shape: BlockShape | None = None) -> int:
        """The index in ``replicas`` to send to. ``rank``: this gateway instance's place among the instances
        sharing this model (0 when alone; see ``AffinitySettings.instance_band_s``)."""
        if not replicas:
            raise InvalidRequestError("no replica to choose from")
        if len(replicas) == 1:
            return 0
        ests = self.estimate(blocks, input_tokens, now_s, replicas, shape)
        s = self.settings
        best_cost = min(e.cost for e in ests)

        def order(e: ReplicaEstimate) -> tuple[float, float, int]:
            return self._model(replicas[e.replica]).decayed_busy(now_s, s.busy_tau_s), e.cost, e.replica

        first = min((e for e in ests if e.cost <= best_cost + s.tie_s), key=order)  # a lone router's choice
        if rank > 0 and s.instance_band_s > 0.0:
            # Rank 0 takes ``first``; the others take the rest of the band, least recently busy first. (Until
            # 2026-11-27 the whole band was ordered by busy time, so rank 1's pick was rank 0's whenever the
            # cheapest replica was not also the least busy: the instances still herded with both in the band.)
            rest = sorted((e for e in ests if e.cost <= best_cost + s.instance_band_s and e is not first), key=order)
            band = [first, *rest]
            return band[rank % len(band)].replica
        return first.replica

    def assign(self, key: Hashable, blocks: Sequence[int], input_tokens: int, now_s: float,
               replica: Hashable, lag_s: float = 0.0, shape: BlockShape | None = None) -> int:
        """The request ``key`` was sent to ``replica`` at ``now_s``. ``lag_s``: how late this router learns of
        its events (0 for its own calls; for another gateway instance's, the delay of its start event), so that
        a call predicted done less than ``lag_s`` ago counts as done rather than overdue. ``shape``: the blocks'
        sizes (the gateway's; full blocks if omitted). Returns how many leading blocks were cached there before
        (the ones a call that is refused before its prefill leaves cached)."""
        s = self.settings
        m = self._model(replica)
        cached_run = m.cache.leading_run(blocks)
        if shape is None:
            hit = cached_tokens(cached_run, input_tokens, s.block_tokens)
        else:
            hit = min(input_tokens, shape.tokens(shape.run(m.cache, blocks)))

        def block_tokens(k: int) -> int:  # tokens of block k
            if shape is None:
                return cached_tokens(k + 1, input_tokens, s.block_tokens) - cached_tokens(k, input_tokens,
                                                                                          s.block_tokens)
            return shape.sizes[k]

        self._decay_pollution(now_s)
        best = ghost_best = 0
        ghost_model: _ReplicaModel | None = None
        for other in self._replicas.values():
            r_run = other.cache.leading_run(blocks)
            best = max(best, r_run)
            g = r_run + other.ghost.leading_run(blocks[r_run:])
            if g > ghost_best:
                ghost_best, ghost_model = g, other
        if ghost_model is not None and ghost_best > best:
            # Blocks best..ghost_best were found only in a ghost list: tokens missed because they were evicted,
            # credited to the idle-age bucket each was evicted at.
            for k in range(best, ghost_best):
                bucket = ghost_model.ghost.get(blocks[k])
                if bucket is None:  # the run reached past this ghost through that replica's own cache
                    continue
                self._lost_tokens[int(bucket)] += block_tokens(k)
        evicted = m.cache.put([(b, now_s) for b in blocks], shape.weights() if shape is not None else None)
        m.ghost.discard(blocks)
        if evicted:
            aged = [(b, float(bisect_right(AGE_EDGES_S, now_s - t))) for b, t, _ in evicted]
            sizes = [size for _, _, size in evicted]
            m.ghost.put(aged, sizes if shape is not None else None)
            for (_, bucket), size in zip(aged, sizes, strict=True):
                self._evictions[int(bucket)] += size
        if not m.queue:
            m.anchor_s = max(m.anchor_s, now_s)
        prefill = self.prefill_seconds(input_tokens - hit)
        template = self._template(blocks)
        m.queue.append(_Pending(key, now_s, prefill, input_tokens - hit, template, max(0.0, lag_s)))
        self._where[key] = replica
        service = prefill + self._decode.predict(template)
        m.add_busy(now_s, s.busy_tau_s, service)
        self._work.append((now_s, service))
        self._work_sum += service
        # also here, not only when choosing: an instance that hears the other instances' calls on a deployment it
        # sends nothing to (out of rotation, or its tenants never go there) kept one entry per call they made
        self._expire_work(now_s)
        return cached_run

    def report_held(self, replica: Hashable, held: int | None) -> None:
        """The replica's engine holds ``held`` requests (running and waiting; ``None``: no current report).

        Those beyond the ones modelled here (sent and not seen done, by this router or, with shared events, by
        the other gateway instances) are someone else's load: until the next report each counts as one more
        request of mean service time ahead in the queue. Counted at the report, so the calls sent after it
        are not subtracted from it."""
        m = self._model(replica)
        m.foreign = 0 if held is None else max(0, held - len(m.queue))

    def forget(self, replica: Hashable, blocks: Sequence[int]) -> None:
        """Stop counting on ``blocks`` being cached at ``replica`` (a call there failed: it may never have been
        prefilled, and a failing replica may have restarted with an empty cache)."""
        self._model(replica).cache.discard(blocks)

    def expire(self, before_s: float) -> int:
        """Drop the calls sent before ``before_s`` that were never seen done (another instance's whose completion
        was lost: it crashed, or its event never reached Redis), learning nothing from them; without this each
        one stays queued for good and its replica looks busy forever. Returns how many were dropped."""
        dropped = 0
        for m in self._replicas.values():
            stale = [p for p in m.queue if p.arrival_s < before_s]
            if stale:
                m.queue = deque(p for p in m.queue if p.arrival_s >= before_s)
                for p in stale:
                    self._where.pop(p.key, None)
                dropped += len(stale)
        return dropped

    def complete(self, key: Hashable, now_s: float, ok: bool = True) -> None:
        """The request ``key`` was observed done at ``now_s`` (unknown keys are ignored). A failed call
        (``ok=False``) leaves the queue but teaches nothing about service times: it may have ended at once."""
        replica = self._where.pop(key, None)
        if replica is None:
            return
        m = self._model(replica)
        for idx, p in enumerate(m.queue):
            if p.key == key:
                if idx == 0:
                    start = max(m.anchor_s, p.arrival_s)
                    # a completion heard late (another instance's, stamped before this replica's last one) is
                    # no service time to learn from, and never moves the replica's clock back
                    learn = ok and now_s >= start
                    if learn and self.settings.learn_prefill_rate:
                        self._rate.observe(p.uncached_tokens, now_s - start)
                    if learn:
                        self._decode.observe(p.template, now_s - start - p.prefill_s)
                    m.anchor_s = max(m.anchor_s, now_s)
                del m.queue[idx]
                break
