"""Load on `resnet-cifar serve`: concurrent clients posting one 32x32 PNG each to /api/predict, dynamic batching off
and on, side by side.

Starts the real server on 127.0.0.1 (a free port) once per setting, rounds alternating between the settings, and
runs CLIENTS threads that each send requests back to back over a kept-alive connection for SECONDS. A health check
is asked every 0.25 s while the load runs. Prints requests/s and the latency percentiles of each setting, and the
ratio of the two throughputs; the summary is appended to the results ledger (docs/results/ledger.jsonl), from which
docs/serving.md's table is rendered (tools/render_tables.py):

    python benchmarks/serve_load.py --clients 20 --seconds 15 --rounds 2

Batching off is `serve --max-batch 1`: each request is its own forward pass, one at a time. The clients run on the
same machine as the server, so on a 2-core CPU they take part of its time; every setting pays that alike.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from PIL import Image

from resnet_cifar.runtime import machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main

SETTINGS = {"batching off": ["--max-batch", "1"], "batching on": []}
BOUNDARY = "loadtestboundary"


def upload_body(seed: int) -> bytes:
    """A multipart body holding one 32x32 PNG (a colour per client, so the answers differ)."""
    picture = io.BytesIO()
    Image.new("RGB", (32, 32), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256)).save(picture, format="PNG")
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{seed}.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + picture.getvalue() + f"\r\n--{BOUNDARY}--\r\n".encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(flags: list[str], weights: str | None) -> tuple[subprocess.Popen, int, str]:
    """(the server process, its port, the precision it computes in)."""
    port = free_port()
    command = [sys.executable, "-m", "resnet_cifar", "serve", "--port", str(port), *flags]
    command += ["--weights", weights] if weights else []
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/health")
            response = connection.getresponse()
            if response.status == 200:
                return process, port, json.loads(response.read())["precision"]
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not answer within 120 s")


def client(port: int, body: bytes, until: float, latencies: list[float], failures: list[str]) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(len(body))}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            connection.request("POST", "/api/predict", body=body, headers=headers)
            response = connection.getresponse()
            answer = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as error:
            failures.append(repr(error))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        if response.status == 200 and answer[0]["top"]:
            latencies.append(time.perf_counter() - started)
        else:
            failures.append(f"{response.status}: {answer}")
    connection.close()


def health_checks(port: int, until: float, latencies: list[float], failures: list[str]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/api/health")
            ok = connection.getresponse().status == 200
            connection.close()
        except OSError as error:
            failures.append(f"health: {error!r}")
            ok = False
        if ok:
            latencies.append(time.perf_counter() - started)
        time.sleep(0.25)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def load_once(flags: list[str], clients: int, seconds: float, weights: str | None) -> dict:
    process, port, precision = start_server(flags, weights)
    try:
        bodies = [upload_body(seed) for seed in range(clients)]
        latencies: list[float] = []
        health: list[float] = []
        failures: list[str] = []
        warmup = time.monotonic() + 1.0  # a first forward pass of each shape
        client(port, bodies[0], warmup, [], [])
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(target=client, args=(port, body, until, latencies, failures)) for body in bodies
        ] + [threading.Thread(target=health_checks, args=(port, until, health, failures))]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "health_max_ms": 1000 * max(health) if health else float("nan"),
        "health_checks": len(health),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "precision": precision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0, help="load per round and setting")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each running every setting once, alternating")
    parser.add_argument("--weights", default=None, help="weights to serve (default: the shipped ones)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    ledger.add_flags(parser)
    args = parser.parse_args()
    print(f"machine: {machine_description()}")
    print(f"{args.clients} clients, {args.seconds:g} s per round and setting, {args.rounds} rounds", flush=True)
    rounds: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for number in range(args.rounds):
        order = list(SETTINGS) if number % 2 == 0 else list(reversed(SETTINGS))
        for name in order:
            result = load_once(SETTINGS[name], args.clients, args.seconds, args.weights)
            rounds[name].append(result)
            print(
                f"round {number + 1} {name:<13} {result['requests_per_s']:7.1f} requests/s  "
                f"p50 {result['p50_ms']:6.0f} ms  p95 {result['p95_ms']:6.0f} ms  p99 {result['p99_ms']:6.0f} ms  "
                f"health max {result['health_max_ms']:5.0f} ms  failures {result['failures']}",
                flush=True,
            )
    summary = {}
    print(
        f"{'setting':<14} {'requests/s (median)':>20} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'health max ms':>14}"
    )
    for name, results in rounds.items():
        summary[name] = {
            key: statistics.median(r[key] for r in results)
            for key in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "health_max_ms")
        }
        summary[name]["failures"] = sum(r["failures"] for r in results)
        row = summary[name]
        print(
            f"{name:<14} {row['requests_per_s']:>20.1f} {row['p50_ms']:>7.0f} {row['p95_ms']:>7.0f} "
            f"{row['p99_ms']:>7.0f} {row['health_max_ms']:>14.0f}"
        )
    ratio = summary["batching on"]["requests_per_s"] / summary["batching off"]["requests_per_s"]
    print(f"throughput ratio, batching on / off: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "rounds": rounds, "summary": summary}))
    if args.record:
        precision = rounds["batching on"][0]["precision"]
        seeds = list(range(args.clients))  # the clients' images
        ledger.append(ledger.record("serve_load", summary, precision=precision, seeds=seeds), args.ledger)
        print(f"recorded in {args.ledger}")


if __name__ == "__main__":
    sys.exit(run_main(main))
