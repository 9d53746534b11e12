"""``mlsyskit serve run``: the OpenAI-compatible HTTP server (registered in serving/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlsyskit.clikit import console
from mlsyskit.serving.neo.scheduler import OffloadMode
from mlsyskit.serving.policy import PolicyName


def serve_run(
    model: Annotated[str, typer.Option(help="Model preset served with random weights "
                                       "(tiny, small).")] = "tiny",
    policy: Annotated[PolicyName, typer.Option(help="Scheduling policy.")] = PolicyName.FCFS,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Local Hugging Face Llama directory (weights + tokenizer) to serve "
                     "instead of a preset."),
    ] = None,
    block_size: Annotated[int, typer.Option(help="Tokens per KV block.")] = 16,
    num_device_blocks: Annotated[int, typer.Option(help="Device KV blocks.")] = 256,
    num_host_blocks: Annotated[int, typer.Option(help="Host (swap) KV blocks.")] = 256,
    max_num_seqs: Annotated[int, typer.Option(help="Requests per step at most.")] = 64,
    max_num_batched_tokens: Annotated[int, typer.Option(help="Token budget per step.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
    offload: Annotated[
        OffloadMode | None,
        typer.Option(help="Serve with NEO's engine: neo (decode attention of some requests on "
                     "a host thread), fastdecode (all of them) or none (its device-only "
                     "baseline). Presets and --policy fcfs only."),
    ] = None,
) -> None:
    """Serve /v1/completions, /v1/chat/completions, /v1/models, /health and /metrics."""
    from mlsyskit.serving.server.launch import ServerConfig, build_app, run_server

    config = ServerConfig(
        model=model, policy=policy.value, host=host, port=port, checkpoint=checkpoint,
        block_size=block_size, num_device_blocks=num_device_blocks,
        num_host_blocks=num_host_blocks, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens, seed=seed,
        offload=None if offload is None else offload.value,
    )
    app = build_app(config)  # bad names and checkpoints fail here, before anything listens
    where = "" if offload is None else f", offload {offload.value}"
    console.print(f"serving {checkpoint or model} ({policy.value}{where}) on "
                  f"http://{host}:{port}/v1", highlight=False)
    run_server(config, app)
