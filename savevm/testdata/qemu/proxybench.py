#!/usr/bin/env python3
"""Live migration throughput, direct and through `qbench stream copy`.

A paused QEMU 7.2 guest with a blob of random data loaded migrates to a
second QEMU, directly or through qbench between two Unix or two TCP
sockets, several times, the ways interleaved. Prints QEMU's figures
(query-migrate total-time and RAM mbps) per run and the medians.

  proxybench.py --qbench ./qbench --ram 512 --blob 128 --runs 5 direct-unix unix direct-tcp tcp

--multifd N sets the multifd capability and N channels on both QEMUs and
gives qbench --multifd-channels N.
"""
import argparse, json, os, random, socket, statistics, subprocess, sys, tempfile, time

def qmp_connect(path, proc):
    for _ in range(600):
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(path); break
        except OSError:
            if proc.poll() is not None:
                sys.exit("QEMU exited early")
            time.sleep(0.05)
    f = s.makefile("rw"); f.readline()
    def cmd(name, args=None):
        m = {"execute": name}
        if args is not None:
            m["arguments"] = args
        f.write(json.dumps(m) + "\n"); f.flush()
        while True:
            r = json.loads(f.readline())
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError("%s: %s" % (name, r["error"]))
            return r.get("return")
    cmd("qmp_capabilities")
    return cmd

def qemu(d, role, ram, blob, extra):
    sock = os.path.join(d, role + ".qmp")
    args = ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-display", "none", "-machine", "pc-i440fx-7.2",
            "-m", "%dM" % ram, "-S", "-qmp", "unix:%s,server=on,wait=off" % sock] + extra
    if role == "src":
        args += ["-device", "loader,file=%s,addr=0x100000,force-raw=on" % blob]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, qmp_connect(sock, p)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def wait_path(path):
    for _ in range(600):
        if os.path.exists(path):
            return
        time.sleep(0.01)
    sys.exit("no " + path)

def run(way, qb, ram, blob, d, multifd=0):
    dst, dcmd = qemu(d, "dst", ram, blob, ["-incoming", "defer"])
    src, scmd = qemu(d, "src", ram, blob, [])
    proxy = None
    mfd = []
    if multifd:
        mfd = ["--multifd-channels", str(multifd)]
        for c in (scmd, dcmd):
            c("migrate-set-capabilities", {"capabilities": [{"capability": "multifd", "state": True}]})
            c("migrate-set-parameters", {"multifd-channels": multifd})
    try:
        if way in ("direct-unix", "unix"):
            dsock = os.path.join(d, "dst.sock")
            if os.path.exists(dsock):
                os.remove(dsock)
            dcmd("migrate-incoming", {"uri": "unix:" + dsock}); wait_path(dsock)
            dst_uri = "unix:" + dsock
        else:
            port = free_port()
            dcmd("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % port}); time.sleep(0.2)
            dst_uri = "tcp:127.0.0.1:%d" % port
        uri = dst_uri
        if way == "unix":
            ssock = os.path.join(d, "src.sock")
            proxy = subprocess.Popen([qb, "stream", "copy"] + mfd + ["unix:" + ssock, dst_uri], stderr=subprocess.PIPE)
            wait_path(ssock); uri = "unix:" + ssock
        elif way == "tcp":
            port = free_port()
            proxy = subprocess.Popen([qb, "stream", "copy"] + mfd + ["tcp:127.0.0.1:%d" % port, dst_uri], stderr=subprocess.PIPE)
            time.sleep(0.3); uri = "tcp:127.0.0.1:%d" % port
        scmd("migrate-set-parameters", {"max-bandwidth": 100 << 30, "downtime-limit": 2000000})
        t0 = time.monotonic()
        scmd("migrate", {"uri": uri})
        while True:
            mi = scmd("query-migrate")
            if mi["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.02)
        # The source completes once the last byte left it, which through a
        # proxy is before the destination has it: wall time runs until the
        # destination has loaded everything.
        while mi["status"] == "completed":
            st = dcmd("query-migrate").get("status")
            if st in ("completed", "failed"):
                break
            time.sleep(0.005)
        wall = (time.monotonic() - t0) * 1000
        if mi["status"] != "completed":
            err = ""
            if proxy:
                proxy.kill(); err = proxy.communicate()[1].decode()
            sys.exit("%s: migration %s: %s; qbench: %s" % (way, mi["status"], mi.get("error-desc"), err))
        if proxy:
            _, err = proxy.communicate(timeout=60)
            if proxy.returncode != 0:
                sys.exit("qbench: %s" % err.decode())
        return mi["total-time"], mi["ram"]["mbps"], mi["ram"]["transferred"], wall
    finally:
        for p, c in ((src, scmd), (dst, dcmd)):
            try:
                c("quit")
            except Exception:
                pass
            p.wait()
        if proxy and proxy.poll() is None:
            proxy.kill(); proxy.wait()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qbench", required=True)
    ap.add_argument("--ram", type=int, default=512, help="guest MiB")
    ap.add_argument("--blob", type=int, default=128, help="MiB of random data in the guest")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--multifd", type=int, default=0, help="multifd channels (0: one stream)")
    ap.add_argument("ways", nargs="+", choices=["direct-unix", "unix", "direct-tcp", "tcp"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        blob = os.path.join(d, "blob.bin")
        with open(blob, "wb") as f:
            f.write(random.Random(12).randbytes(a.blob << 20))
        res = {w: [] for w in a.ways}
        for i in range(a.runs):
            for w in a.ways:
                t, mbps, n, wall = run(w, a.qbench, a.ram, blob, d, a.multifd)
                res[w].append((t, mbps, wall))
                print("run %d %-11s total-time %5d ms  %8.1f Mbps  %d bytes  destination done after %5.0f ms" % (i, w, t, mbps, n, wall), flush=True)
        for w in a.ways:
            ts = [t for t, _, _ in res[w]]; ms = [m for _, m, _ in res[w]]; ws = [x for _, _, x in res[w]]
            print("median %-11s total-time %6.0f ms  %8.1f Mbps  destination done after %6.0f ms (range %.0f-%.0f)" % (
                w, statistics.median(ts), statistics.median(ms), statistics.median(ws), min(ws), max(ws)))

if __name__ == "__main__":
    main()
