"""An in-process Grid fake: messages go straight to a ClientApp, one Context per node."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run


class LoopbackGrid(Grid):
    def __init__(self, client_app: ClientApp, num_nodes: int, run_config: dict) -> None:
        self.app = client_app
        self.node_ids = [1000 + 7 * i for i in range(num_nodes)]  # not 0..N-1 on purpose
        self.contexts = {
            node: Context(run_id=1, node_id=node, state=RecordDict(), run_config=run_config,
                          node_config={"partition-id": i, "num-partitions": num_nodes})
            for i, node in enumerate(self.node_ids)
        }
        self.sent: list[Message] = []

    def set_run(self, run: Run) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Run:
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            self.sent.append(msg)
            # a reply's src_node_id is the request's dst_node_id (Message(reply_to=...))
            replies.append(self.app(msg, self.contexts[msg.metadata.dst_node_id]))
        return replies
