#!/usr/bin/env python3
"""Execute one notebook top to bottom with the tslab kernel (nbclient), headless.

    execute_notebook.py INPUT.ipynb OUTPUT.ipynb [--timeout SECONDS]

Differences from `jupyter nbconvert --execute`: the kernel starts in the notebook's own folder (so
`./lib` resolves); the text a cell prints is echoed live to this process's stdout (long training
cells show their progress lines); the executed notebook is written even when a cell fails, and the
failing cell's source and outputs (tslab reports TypeScript errors on stderr) are printed.
Exit status 0 when every cell ran, 1 when one failed.
"""
import os
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


class EchoClient(NotebookClient):
    def output(self, outs, msg, display_id, cell_index):
        if msg.get("msg_type") == "stream":
            text = msg["content"].get("text", "")
            stream = sys.stdout if msg["content"].get("name") == "stdout" else sys.stderr
            stream.write(text)
            stream.flush()
        return super().output(outs, msg, display_id, cell_index)


def cell_text(cell):
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif o.get("output_type") == "error":
            parts.append(f"{o.get('ename', '')}: {o.get('evalue', '')}\n" + "\n".join(o.get("traceback", [])))
    return "".join(parts)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = argv[0], argv[1]
    timeout = None
    if "--timeout" in argv:
        t = float(argv[argv.index("--timeout") + 1])
        timeout = None if t <= 0 else t
    nb = nbformat.read(src, as_version=4)
    client = EchoClient(
        nb,
        timeout=timeout,
        kernel_name="tslab",
        # nbclient waits 60 s by default for the kernel to start; a tslab kernel once took longer on a
        # loaded 2-vCPU machine (CI went red on "Kernel didn't respond in 60 seconds" with every cell fine)
        startup_timeout=300,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}},
    )
    failed = None
    try:
        client.execute()
    except CellExecutionError as e:
        failed = e
    finally:
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        tmp = dst + ".tmp-%d" % os.getpid()
        nbformat.write(nb, tmp)
        os.replace(tmp, dst)
    if failed is None:
        return 0
    # The failing cell: the last code cell that ran (tslab reports errors as stderr text).
    bad = None
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            bad = cell
    if bad is not None:
        print("\n--- failing cell ---\n" + bad.source + "\n--- its output ---\n" + cell_text(bad), file=sys.stderr)
    else:
        print(str(failed), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
