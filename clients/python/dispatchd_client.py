"""A small Python client of dispatchd's API (dispatch.v1.Dispatch).

The gRPC stubs (dispatch/v1/api_pb2.py and api_pb2_grpc.py) are generated
from proto/dispatch/v1/api.proto with protoc and grpc_python_plugin
(`bazel build //clients/python:stubs`, or by hand:
`protoc -Iproto --python_out=OUT --grpc_python_out=OUT
--plugin=protoc-gen-grpc_python=$(which grpc_python_plugin)
proto/dispatch/v1/api.proto`); put OUT on PYTHONPATH. Works with Debian's
python3-grpcio and python3-protobuf.

    client = Client("127.0.0.1:7700", token=os.environ.get("DISPATCHD_TOKEN"))
    sent = client.emit(event_id="demo.some-event", payload=b"hello",
                       idempotency_key="build-42")
    for update in client.watch(event_id=sent.event_id):
        print(update.kind, update.detail)

Every method raises grpc.RpcError with the server's status code and message
(INVALID_ARGUMENT naming the rule an Emit broke, UNAUTHENTICATED,
PERMISSION_DENIED, RESOURCE_EXHAUSTED when a watcher fell behind, ...).
"""

import grpc

from dispatch.v1 import api_pb2
from dispatch.v1 import api_pb2_grpc

Kind = api_pb2.WatchUpdate.Kind


class Client:
    """One channel to a dispatchd controller; methods map to the RPCs."""

    def __init__(self, address="127.0.0.1:7700", token=None, root_certificates=None,
                 private_key=None, certificate_chain=None, timeout=10.0):
        if root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key,
                                                       certificate_chain)
            self._channel = grpc.secure_channel(address, credentials)
        else:
            self._channel = grpc.insecure_channel(address)
        self._stub = api_pb2_grpc.DispatchStub(self._channel)
        self._metadata = [("authorization", "Bearer " + token)] if token else []
        self._timeout = timeout

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def emit(self, event_id=None, path=None, payload=b"", host="", idempotency_key=""):
        """Writes an event file through an agent; returns once it is on disk."""
        request = api_pb2.EmitRequest(payload=payload, host=host,
                                      idempotency_key=idempotency_key)
        if event_id is not None:
            request.event_id = event_id
        if path is not None:
            request.path = path
        return self._stub.Emit(request, metadata=self._metadata, timeout=self._timeout)

    def watch(self, event_id="", prefix="", kinds=(), buffer=0, timeout=None):
        """Yields WatchUpdate messages as they happen (an iterator; cancel() it to stop)."""
        request = api_pb2.WatchRequest(event_id=event_id, event_id_prefix=prefix,
                                       kinds=list(kinds), buffer=buffer)
        return self._stub.Watch(request, metadata=self._metadata, timeout=timeout)

    def events(self):
        return self._stub.ListEvents(api_pb2.ListEventsRequest(), metadata=self._metadata,
                                     timeout=self._timeout).events

    def event(self, event_id, agent_id="", path=""):
        return self._stub.GetEvent(
            api_pb2.GetEventRequest(event_id=event_id, agent_id=agent_id, path=path),
            metadata=self._metadata, timeout=self._timeout)

    def explain(self, event_id, host=""):
        return self._stub.Explain(api_pb2.ExplainRequest(event_id=event_id, host=host),
                                  metadata=self._metadata, timeout=self._timeout)

    def dead_letters(self, host=""):
        return self._stub.ListDeadLetters(api_pb2.ListDeadLettersRequest(host=host),
                                          metadata=self._metadata,
                                          timeout=self._timeout).dead_letters

    def replay(self, host, path):
        return self._stub.ReplayDeadLetter(api_pb2.ReplayDeadLetterRequest(host=host, path=path),
                                           metadata=self._metadata, timeout=self._timeout)

    def purge(self, host, path):
        return self._stub.PurgeDeadLetter(api_pb2.PurgeDeadLetterRequest(host=host, path=path),
                                          metadata=self._metadata, timeout=self._timeout)

    def status(self):
        return self._stub.GetStatus(api_pb2.GetStatusRequest(), metadata=self._metadata,
                                    timeout=self._timeout)


def kind_name(kind):
    """'SETTLED' for Kind.SETTLED, and so on."""
    return api_pb2.WatchUpdate.Kind.Name(kind)


def outcome_name(outcome):
    """'delivered' for DELIVERY_OUTCOME_DELIVERED, and so on."""
    return api_pb2.DeliveryOutcome.Name(outcome).replace("DELIVERY_OUTCOME_", "").lower()
