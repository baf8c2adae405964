"""Runs a WASI program under the wasmtime Python package: what scripts/wasm-run execs.

    python3 wasm_run.py PROGRAM.wasm [ARGS...]

Works like `wasmtime run --dir . PROGRAM.wasm ARGS...`: argv, environment, stdin, stdout and
stderr are the caller's, the current directory is the guest's "." (and also its own absolute
path, so a test that builds a path from env!("CARGO_MANIFEST_DIR") finds its fixtures), and the
guest's exit code is ours. A trap (a Rust panic under panic=abort ends in `unreachable`) exits
134, as the wasmtime CLI does, so cargo reports the test binary as failed, not passed.

Takes both a core module (wasm32-wasip1) and a component (wasm32-wasip2): the 8-byte header tells
them apart. Compiled code is cached (wasmtime's own cache under $HOME/.cache), so a second run of
an unchanged test binary skips Cranelift; that cache is what makes warm `cargo test` fast.
"""
import os
import sys

import wasmtime
from wasmtime import Config, Engine, ExitTrap, Store, Trap, WasiConfig, WasmtimeError

TRAP_EXIT = 134  # 128 + SIGABRT, like the CLI, and like a native panic=abort


def wasi_config(argv):
    wasi = WasiConfig()
    wasi.argv = argv
    wasi.inherit_env()
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    cwd = os.getcwd()
    wasi.preopen_dir(cwd, ".")
    if cwd != "/":
        wasi.preopen_dir(cwd, cwd)
    return wasi


def run_module(engine, store, path):
    module = wasmtime.Module.from_file(engine, path)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, module)
    instance.exports(store)["_start"](store)
    return 0


def run_component(engine, store, path):
    from wasmtime import component

    comp = component.Component.from_file(engine, path)
    linker = component.Linker(engine)
    linker.add_wasip2()
    instance = linker.instantiate(store, comp)
    # A wasip2 command exports wasi:cli/run@0.2.x; take whichever 0.2 minor it was built against.
    run = None
    for minor in range(20, -1, -1):
        iface = instance.get_export_index(store, f"wasi:cli/run@0.2.{minor}")
        if iface is not None:
            run = instance.get_func(store, instance.get_export_index(store, "run", iface))
            break
    if run is None:
        sys.exit(f"wasm-run: {path} is a component without a wasi:cli/run export")
    result = run(store)
    run.post_return(store)
    # run returns result<_, _>, lifted as Variant(tag='ok'|'err'); a guest that calls exit(n)
    # instead ends in ExitTrap, handled by the caller.
    return 0 if getattr(result, "tag", "ok") == "ok" else 1


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: wasm-run PROGRAM.wasm [ARGS...]")
    path = sys.argv[1]
    with open(path, "rb") as f:
        header = f.read(8)
    if header[:4] != b"\0asm":
        sys.exit(f"wasm-run: {path} is not a WebAssembly file")
    is_component = header[4:8] != b"\x01\0\0\0"

    config = Config()
    config.cache = True
    if is_component:
        config.wasm_component_model = True
    engine = Engine(config)
    store = Store(engine)
    # The guest sees its own file name as argv[0], as under the CLI (libtest prints it).
    store.set_wasi(wasi_config([os.path.basename(path)] + sys.argv[2:]))
    try:
        code = (run_component if is_component else run_module)(engine, store, path)
    except ExitTrap as e:
        code = e.code
    except (Trap, WasmtimeError) as e:
        print(f"wasm-run: {path}: {e}", file=sys.stderr)
        code = TRAP_EXIT
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
