"""Route prompts in-process with irde_onnx.Router: no server, no torch.

    python app.py ROUTER_DIR "Solve 3x + 5 = 20" "Draft an NDA"
    python app.py ROUTER_DIR < prompts.txt          # one prompt per line

Prints one JSON object per prompt: the prompt, the chosen expert, its confidence and every
expert's score. The router is loaded once and routes batches from many threads at once, so
a web app keeps one Router for its whole life.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from irde_onnx import IrdeError, Router


def route_all(router: Router, prompts: list[str], workers: int = 2) -> list[dict]:
    """Route prompts in batches of 8 on a few threads (Router.route is thread-safe)."""
    batches = [prompts[i : i + 8] for i in range(0, len(prompts), 8)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        routed = [r for batch in pool.map(router.route, batches) for r in batch]
    return [{"prompt": p, **r.to_dict()} for p, r in zip(prompts, routed, strict=True)]


def main(argv: list[str]) -> int:
    """Load the router named first, route the other arguments (or stdin's lines), print JSON."""
    if not argv:
        print(
            "usage: python app.py ROUTER_DIR [PROMPT ...]  (prompts from stdin if none)",
            file=sys.stderr,
        )
        return 2
    try:
        router = Router.load(argv[0], threads=1)
    except (IrdeError, FileNotFoundError) as exc:
        print(f"app.py: cannot load the router: {exc}", file=sys.stderr)
        return 2
    prompts = argv[1:] or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for row in route_all(router, prompts):
        print(json.dumps(row, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
