"""What a streamed upstream call costs with its connection reused, and with a new connection per call.

Until 2026-11-28 the SSE reader stopped at ``[DONE]`` before the end of the body, so httpx could not put the
connection back in its pool and every streamed call opened a new one. This measures both, over plain HTTP and over
HTTPS (a self-signed certificate made with the ``openssl`` command), against the package's test upstream on loopback
(zero delay, 4 events per answer): ``OpenAIHTTPAdapter.stream`` with the shipped client (connections reused) and
with a client that keeps no idle connection (a new TCP connection, and TLS handshake, per call: the old
behaviour). Rounds alternate the arms; figures are medians over rounds of each round's p50 / p90 latency per call
and of this process's CPU per call (the gateway side of the call only; the upstream runs in another process).

    python bench/stream_reuse.py [--rounds 5 --calls 300]     # -> bench/results/stream_reuse.json

Loopback has no network round trip: against a remote upstream each new connection also costs one round trip
(TCP), and one more for TLS 1.3 (two for 1.2), on top of what is measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def serve_upstream(port: int, cert: str, key: str) -> None:
    import uvicorn

    from sovrouter.testing_upstream import UpstreamBehaviour, create_upstream_app

    app = create_upstream_app(UpstreamBehaviour(reply="The answer is 42.", chunks=4))
    tls = {"ssl_certfile": cert, "ssl_keyfile": key} if cert else {}
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **tls)  # type: ignore[arg-type]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certificate(folder: str) -> tuple[str, str]:
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def _wait_up(url: str, verify: ssl.SSLContext | bool, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"upstream for {url} exited")
        try:
            if httpx.get(url + "/health", verify=verify, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"upstream {url} did not start")


async def _arm(url: str, verify: ssl.SSLContext | bool, reuse: bool, calls: int) -> tuple[list[float], float]:
    from sovrouter.adapters.openai_http import OpenAIHTTPAdapter
    from sovrouter.contracts import Candidate, ModelCall
    from sovrouter.intake import normalize_chat

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256 if reuse else 0)
    client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0), limits=limits, verify=verify)
    cand = Candidate(slot="sovereign-large", deployment="eu-sov")
    adapter = OpenAIHTTPAdapter(cand, [url], client=client)
    lat: list[float] = []
    try:
        cpu0 = time.process_time()
        for i in range(calls):
            req = normalize_chat({"messages": [{"role": "user", "content": f"call {i}: six times seven?"}]},
                                 tenant="t", request_id=f"r{i}")
            t0 = time.perf_counter()
            async for chunk in adapter.stream(ModelCall(request=req, allowed=[cand])):
                if chunk.final is not None and chunk.final.text != "The answer is 42.":
                    raise RuntimeError("unexpected answer")
            lat.append((time.perf_counter() - t0) * 1000.0)
        cpu_ms = (time.process_time() - cpu0) * 1000.0 / calls
    finally:
        await adapter.aclose()
        await client.aclose()
    return lat, cpu_ms


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        cert, key = _certificate(folder)
        for scheme in ("http", "https"):
            port = _free_port()
            proc = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(port),
                                     cert if scheme == "https" else "", key if scheme == "https" else ""])
            url = f"{scheme}://127.0.0.1:{port}"
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cert) if scheme == "https" else True
            try:
                _wait_up(url, verify, proc)
                asyncio.run(_arm(url, verify, True, 30))  # warm-up: imports, first handshakes
                rounds: dict[str, list[dict[str, float]]] = {"reused": [], "new_per_call": []}
                for k in range(args.rounds):
                    order = (True, False) if k % 2 == 0 else (False, True)
                    for reuse in order:
                        lat, cpu_ms = asyncio.run(_arm(url, verify, reuse, args.calls))
                        rounds["reused" if reuse else "new_per_call"].append(
                            {"p50_ms": _pct(lat, 50), "p90_ms": _pct(lat, 90), "cpu_ms_per_call": cpu_ms})
            finally:
                proc.terminate()
                proc.wait(timeout=20)
            out[scheme] = {arm: {m: round(statistics.median(r[m] for r in rs), 3) for m in rs[0]}
                           for arm, rs in rounds.items()}
            out[scheme]["rounds"] = rounds
            for arm in ("reused", "new_per_call"):
                f = out[scheme][arm]
                print(f"{scheme:5s} {arm:12s}: p50 {f['p50_ms']:.2f} ms, p90 {f['p90_ms']:.2f} ms, "
                      f"CPU {f['cpu_ms_per_call']:.2f} ms per streamed call", flush=True)
    return {
        "benchmark": "stream_reuse",
        "command": "python bench/stream_reuse.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_end": list(os.getloadavg())},
        "config": {"rounds": args.rounds, "calls_per_round": args.calls, "events_per_answer": 4,
                   "upstream": "sovrouter.testing_upstream on loopback, zero delay"},
        "median_over_rounds": {s: {a: out[s][a] for a in ("reused", "new_per_call")} for s in out},
        "rounds": {s: out[s]["rounds"] for s in out},
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-upstream":
        serve_upstream(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300, help="sequential streamed calls per arm per round")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stream_reuse.json")
    args = ap.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
