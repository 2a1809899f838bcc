"""An instance that only hears the other instances' calls on a deployment keeps a bounded model of them (found in
review: its load window kept one entry per call they made, pruned only when it chose a replica itself)."""

from __future__ import annotations

from sovrouter.clock import SimClock
from sovrouter.intake import normalize_chat
from sovrouter.reuse.affinity_events import MemoryAffinityBus
from sovrouter.reuse.prefix_chooser import PrefixAffinityChooser


def test_idle_instance_forgets_old_peer_calls() -> None:
    clock = SimClock(1_000_000_000.0)
    hub = MemoryAffinityBus()
    busy = PrefixAffinityChooser(clock, events=hub.view("gw-a"), stream="s/d")
    idle = PrefixAffinityChooser(clock, events=hub.view("gw-b"), stream="s/d")
    replicas = ["http://r1", "http://r2"]
    window_s = idle.settings.load_window_s
    n = int(3 * window_s)  # one call a second for three windows
    for i in range(n):
        req = normalize_chat({"messages": [{"role": "user", "content": f"q {i}"}]}, tenant="t", request_id=f"r{i}",
                             data_class="public", arrived_ms=clock.now_ms())
        k = busy.choose(req, replicas)
        busy.observe_start(req, replicas, k)
        clock.set(clock.now_ms() + 1000.0)
        busy.observe_done(req, replicas, k, True, 1000.0)
    assert len(idle._router._work) <= window_s + 2  # the window's calls, not all n
