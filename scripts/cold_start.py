#!/usr/bin/env python3
"""Cold start of the Lambda function `bootstrap`, measured as Lambda sees it.

Emulates the Lambda runtime API (the few endpoints a custom runtime calls) on 127.0.0.1, starts a
real etcd on loopback, then for each run starts the binary as a fresh process (a cold execution
environment), hands it one API Gateway event from fixtures/lambda/ and times:

- init: process start -> the runtime's first `GET /runtime/invocation/next` (Lambda's "Init
  Duration": everything `main` does before it can take an event);
- first response: process start -> `POST /runtime/invocation/<id>/response` (what the first
  caller waits for, minus API Gateway), including the first invocation's work: building the store
  and the router and, for the etcd scenario, connecting to etcd.

CPU time (user + system, whole process) and peak RSS come from wait4() of each run. CPU time
matters on Lambda, where a 256 MB function gets a fraction of a vCPU: wall times on a full core
are a lower bound. Only loopback addresses are used. Called by
scripts/cold-start.sh, which builds the release binary first.

Several `--binary` options compare builds in one run: the runs are interleaved (run i of every
binary, in an order that rotates with i), so drift in the machine's load favours none of them.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "/2018-06-01/runtime"


class Run:
    """One cold start: the event to hand out and the times seen."""

    def __init__(self, event):
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.delivered = False
        self.t_next = None
        self.t_response = None
        self.response = None
        self.error = None
        self.done = threading.Event()
        self.closed = threading.Event()


class RuntimeApi(BaseHTTPRequestHandler):
    """The runtime API of one execution environment: one server per run, so a killed process
    can never take the next run's event."""

    run = None  # set on the per-run subclass

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the process was killed meanwhile

    def do_GET(self):
        run = self.run
        if self.path != f"{PREFIX}/invocation/next":
            return self._reply(404)
        if run.delivered:
            # A warm environment would wait here for its next event; this one is about to be
            # killed.
            run.closed.wait(30)
            return self._reply(500)
        run.t_next = time.perf_counter()
        run.delivered = True
        deadline_ms = int((time.time() + 30) * 1000)
        self._reply(
            200,
            json.dumps(run.event).encode(),
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": run.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn":
                    "arn:aws:lambda:eu-west-1:123456789012:function:flow-api",
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
            },
        )

    def do_POST(self):
        run = self.run
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == f"{PREFIX}/invocation/{run.request_id}/response":
            run.t_response = time.perf_counter()
            run.response = body
        elif self.path.endswith("/error"):
            run.error = body.decode(errors="replace")
        else:
            return self._reply(404)
        self._reply(202, b"{}", {"Content-Type": "application/json"})
        run.done.set()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_etcd(tmp):
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    proc = subprocess.Popen(
        [etcd, "--data-dir", os.path.join(tmp, "etcd"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"default={peer_url}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if b'"health":"true"' in r.read():
                    return proc, url
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit("etcd did not start")
        time.sleep(0.05)


def one_run(binary, env, event, log):
    run = Run(event)
    handler = type("RunApi", (RuntimeApi,), {"run": run})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}")
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    finished = run.done.wait(15)
    proc.send_signal(signal.SIGKILL)
    _, _, usage = os.wait4(proc.pid, 0)
    run.closed.set()
    server.shutdown()
    server.server_close()
    if not finished or run.error or run.t_response is None:
        sys.exit(f"run failed: error={run.error!r}; see the function's log {log.name}")
    status = json.loads(run.response).get("statusCode")
    return {
        "init_ms": (run.t_next - t0) * 1000,
        "first_response_ms": (run.t_response - t0) * 1000,
        "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000,
        "rss_mib": usage.ru_maxrss / 1024,
        "status": status,
    }


def summary(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return values[0], statistics.median(values), p90, values[-1]


def fixture(name):
    with open(os.path.join(ROOT, "fixtures", "lambda", name)) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", action="append", default=[],
                    help="the function's executable (default target/release/bootstrap); give "
                         "it more than once to compare builds, runs interleaved")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="an extra variable of the function, e.g. FLOW_OBSERVABILITY_ENABLED=true")
    args = ap.parse_args()

    binaries = args.binary or [os.path.join(ROOT, "target/release/bootstrap")]
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for binary in binaries:
            # What Lambda receives: a zip holding `bootstrap`.
            zpath = os.path.join(tmp, "bootstrap.zip")
            with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
                z.write(binary, "bootstrap")
            sizes[binary] = (os.path.getsize(binary), os.path.getsize(zpath))
            os.remove(zpath)

        etcd, etcd_url = start_etcd(tmp)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_FUNCTION_NAME": "flow-api",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/flow-api",
            "AWS_LAMBDA_LOG_STREAM_NAME": "cold-start",
            "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true",
            "AWS_REGION": "eu-west-1",
            "ETCD_ENDPOINTS": etcd_url,
        }
        for extra in args.env:
            name, _, value = extra.partition("=")
            env[name] = value
        scenarios = [
            ("GET /healthz (no etcd I/O)", fixture("apigw-v2-healthz.json")),
            ("POST /v1/flows (connects to etcd, one transaction)",
             fixture("apigw-v2-create-flow.json")),
        ]
        results = {}
        log_path = os.path.join(tmp, "function.log")
        try:
            with open(log_path, "w") as log:
                for name, event in scenarios:
                    for binary in binaries:
                        # Warms the page cache; the first creates the flow.
                        one_run(binary, env, event, log)
                        results[(name, binary)] = []
                    for i in range(args.runs):
                        k = i % len(binaries)
                        for binary in binaries[k:] + binaries[:k]:
                            results[(name, binary)].append(one_run(binary, env, event, log))
        except SystemExit:
            with open(log_path) as f:
                sys.stderr.write(f.read()[-4000:])
            raise
        finally:
            etcd.kill()
            etcd.wait()

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}; {rustc}")
    for binary, (size, zsize) in sizes.items():
        print(f"binary: {binary}: {size} bytes ({size / 2**20:.1f} MiB) stripped, "
              f"{zsize} bytes ({zsize / 2**20:.1f} MiB) zipped")
    print(f"runs per scenario: {args.runs} (after one warm-up run)"
          + ("; binaries interleaved" if len(binaries) > 1 else "")
          + (f"; extra variables: {' '.join(args.env)}" if args.env else "") + "\n")
    several = len(binaries) > 1
    print(("| binary " if several else "")
          + "| first event | init (ms) min / median / p90 / max "
          "| first response (ms) min / median / p90 / max | CPU time (ms) median "
          "| peak RSS (MiB) | status |")
    print(("| --- " if several else "") + "| --- | --- | --- | --- | --- | --- |")
    for (name, binary), runs in results.items():
        init = summary([r["init_ms"] for r in runs])
        first = summary([r["first_response_ms"] for r in runs])
        cpu = statistics.median(r["cpu_ms"] for r in runs)
        rss = max(r["rss_mib"] for r in runs)
        statuses = sorted({r["status"] for r in runs})
        print((f"| {binary} " if several else "")
              + f"| {name} | {' / '.join(f'{v:.1f}' for v in init)} "
              f"| {' / '.join(f'{v:.1f}' for v in first)} | {cpu:.0f} | {rss:.1f} "
              f"| {statuses} |")


if __name__ == "__main__":
    main()
