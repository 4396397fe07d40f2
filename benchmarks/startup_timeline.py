"""Wall-clock timeline of one ``napari-smlm localize`` process (issue 16: where start-up goes).

    python benchmarks/startup_timeline.py src localize movie.tif --model decode --device cpu -o out.csv
    python benchmarks/startup_timeline.py /tmp/main_src localize ...     # another source tree

The first argument is the source folder put on ``PYTHONPATH``; the rest are the CLI's arguments.
The child runs the CLI as a real process (``main()`` without arguments, as the console script does);
phases are marked by wrapping functions right after their modules are imported (an import hook),
so nothing is imported earlier than the CLI would. Prints, per phase, seconds of wall clock from
spawning the process and CPU seconds of the process (the last line, "process exited", is the
interpreter's shutdown after the last ``atexit`` handler, seen from the parent; when the CLI ends
with ``os._exit`` after writing its outputs, the line before it says so and ``atexit`` never runs).
"""
import os, subprocess, sys, time
src = sys.argv[1]
child = r'''
import time, sys, os
T = [("interpreter up (site done)", time.time(), time.process_time())]
def mark(s): T.append((s, time.time(), time.process_time()))
import atexit
def _fin():
    mark("atexit (our handler, first registered)")
    sys.stderr.write("TIMELINE " + repr(T) + "\n")
atexit.register(_fin)
_os_exit = os._exit
def _fast_exit(rc):  # the CLI's exit without teardown (_cli_process.finish): report, then exit
    mark("os._exit (no teardown)"); _fin(); sys.stderr.flush(); _os_exit(rc)
os._exit = _fast_exit
import importlib.abc, importlib.machinery
def wrap(mod, name, before, after):
    f = getattr(mod, name)
    def w(*a, **k):
        mark(before); r = f(*a, **k); mark(after); return r
    setattr(mod, name, w)
def patch_inference(m):
    mark("core.inference imported (torch in)")
    wrap(m, "resolve_checkpoint", "resolve_checkpoint start", "checkpoint loaded")
    f = m.iter_predict
    def ip(*a, **k):
        mark("iter_predict start"); n = 0
        for u in f(*a, **k):
            n += 1
            if n in (1, 2): mark(f"batch {n} done")
            if getattr(u.kind, "value", u.kind) == "done": mark("last batch done")
            yield u
    m.iter_predict = ip
PATCH = {
    "napari_smlm.core.inference": patch_inference,
    "napari_smlm.core.models.domain": lambda m: wrap(m, "check_movie", "domain check start", "domain check done"),
    "napari_smlm.core.io.locs": lambda m: wrap(m, "write_localizations", "write table start", "table written"),
    "napari_smlm.core.io.tiff": lambda m: wrap(m, "write_image", "write SR tiff start", "SR tiff written"),
}
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCH: return None
        for f in sys.meta_path:
            if f is self: continue
            spec = f.find_spec(name, path, target) if hasattr(f, "find_spec") else None
            if spec: break
        else: return None
        ex = spec.loader.exec_module
        def exec_module(module, ex=ex, name=name):
            ex(module); PATCH[name](module)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Finder())
mark("harness ready")
import napari_smlm.cli as cli
mark("napari_smlm.cli imported")
sys.argv = ["napari-smlm", *sys.argv[1:]]
try:
    rc_ = cli.main()
finally:
    mark("cli.main returned")
sys.exit(rc_)
'''
env = dict(os.environ, PYTHONPATH=src)
t0 = time.time()
p = subprocess.run([sys.executable, "-c", child, *sys.argv[2:]], env=env, capture_output=True, text=True)
t1 = time.time()
line = [l for l in p.stderr.splitlines() if l.startswith("TIMELINE ")]
if not line:
    print(p.stderr); sys.exit(1)
T = eval(line[0][9:])
print(p.stdout.strip())
prev, pc = t0, 0.0
print(f"{'event':40s} {'t (s)':>7s} {'dt':>7s} {'cpu':>7s} {'dcpu':>7s}")
print(f"{'spawn':40s} {0:7.3f}")
for name, t, c in T:
    print(f"{name:40s} {t - t0:7.3f} {t - prev:7.3f} {c:7.3f} {c - pc:7.3f}")
    prev, pc = t, c
print(f"{'process exited':40s} {t1 - t0:7.3f} {t1 - prev:7.3f}")
