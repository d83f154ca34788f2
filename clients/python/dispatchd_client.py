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

With several controller replicas, give them all ("a:7700,b:7700,c:7700", or
a list): a call goes to the replica that answered last, then to the others
in order while they cannot be reached (UNAVAILABLE); a replica that does not
lead answers FAILED_PRECONDITION with the leader's address in the trailing
metadata `dispatchd-leader`, and the call is made once more there. A watch
looks for its controller the same way until its first update (or until its
initial_metadata() returns: a controller has taken it).

Every method raises grpc.RpcError with the server's status code and message
(INVALID_ARGUMENT naming the rule an Emit broke, UNAUTHENTICATED,
PERMISSION_DENIED, RESOURCE_EXHAUSTED when a watcher fell behind,
FAILED_PRECONDITION when no replica leads, ...).
"""

import grpc

from dispatch.v1 import api_pb2
from dispatch.v1 import api_pb2_grpc

Kind = api_pb2.WatchUpdate.Kind

# The trailing metadata in which a replica that does not lead names the leader.
LEADER_METADATA_KEY = "dispatchd-leader"


def leader_of(error):
    """The leader's address a failed call was sent to, or None."""
    if not isinstance(error, grpc.Call) or error.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == LEADER_METADATA_KEY:
            return value
    return None


class Client:
    """Channels to dispatchd controller replicas; methods map to the RPCs."""

    def __init__(self, address="127.0.0.1:7700", token=None, root_certificates=None,
                 private_key=None, certificate_chain=None, timeout=10.0):
        if isinstance(address, str):
            address = address.split(",")
        self._addresses = []
        for a in (a.strip() for a in address):
            if a and a not in self._addresses:
                self._addresses.append(a)
        if not self._addresses:
            raise ValueError("no controller address")
        self._credentials = None
        if root_certificates is not None:
            self._credentials = grpc.ssl_channel_credentials(root_certificates, private_key,
                                                             certificate_chain)
        self._channels = {}  # address -> (channel, stub)
        self._current = self._addresses[0]
        self._metadata = [("authorization", "Bearer " + token)] if token else []
        self._timeout = timeout

    def close(self):
        for channel, _ in self._channels.values():
            channel.close()
        self._channels.clear()

    def _stub(self, address):
        if address not in self._channels:
            if self._credentials is not None:
                channel = grpc.secure_channel(address, self._credentials)
            else:
                channel = grpc.insecure_channel(address)
            self._channels[address] = (channel, api_pb2_grpc.DispatchStub(channel))
        return self._channels[address][1]

    def _addresses_to_try(self):
        return [self._current] + [a for a in self._addresses if a != self._current]

    def _call(self, method, request, timeout):
        """Calls the stub's `method` at the controller (see the module's doc)."""
        error = None
        for address in self._addresses_to_try():
            try:
                try:
                    response = getattr(self._stub(address), method)(
                        request, metadata=self._metadata, timeout=timeout)
                except grpc.RpcError as e:
                    leader = leader_of(e)
                    if leader is None:
                        raise
                    address = leader
                    response = getattr(self._stub(address), method)(
                        request, metadata=self._metadata, timeout=timeout)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                error = e
                continue
            self._current = address
            return response
        raise error

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
        return self._call("Emit", request, self._timeout)

    def watch(self, event_id="", prefix="", kinds=(), buffer=0, timeout=None):
        """Yields WatchUpdate messages as they happen (an iterator; cancel() it to stop)."""
        request = api_pb2.WatchRequest(event_id=event_id, event_id_prefix=prefix,
                                       kinds=list(kinds), buffer=buffer)
        return _Watch(self, request, timeout)

    def events(self):
        return self._call("ListEvents", api_pb2.ListEventsRequest(), self._timeout).events

    def event(self, event_id, agent_id="", path=""):
        return self._call(
            "GetEvent", api_pb2.GetEventRequest(event_id=event_id, agent_id=agent_id, path=path),
            self._timeout)

    def explain(self, event_id, host=""):
        return self._call("Explain", api_pb2.ExplainRequest(event_id=event_id, host=host),
                          self._timeout)

    def dead_letters(self, host=""):
        return self._call("ListDeadLetters", api_pb2.ListDeadLettersRequest(host=host),
                          self._timeout).dead_letters

    def replay(self, host, path):
        return self._call("ReplayDeadLetter",
                          api_pb2.ReplayDeadLetterRequest(host=host, path=path), self._timeout)

    def purge(self, host, path):
        return self._call("PurgeDeadLetter",
                          api_pb2.PurgeDeadLetterRequest(host=host, path=path), self._timeout)

    def status(self):
        return self._call("GetStatus", api_pb2.GetStatusRequest(), self._timeout)


class _Watch:
    """The updates of a watch: an iterator; cancel() it to stop.

    Until the first update, a controller that cannot be reached sends the
    watch to the next address, and a replica that does not lead to the
    leader it names (once); after it, the end of the stream is raised as it
    is.
    """

    def __init__(self, client, request, timeout):
        self._client = client
        self._request = request
        self._timeout = timeout
        self._addresses = iter(client._addresses_to_try())
        self._redirected = False
        self._updated = False
        self._cancelled = False
        self._call = None
        self._address = None
        self._open(next(self._addresses))

    def _open(self, address):
        self._address = address
        self._call = self._client._stub(address).Watch(
            self._request, metadata=self._client._metadata, timeout=self._timeout)
        if self._cancelled:
            self._call.cancel()

    def _failover(self, call):
        """Opens the watch elsewhere if `call`, ended, says so; True if it did."""
        if self._updated or self._cancelled:
            return False
        leader = leader_of(call)
        if leader is not None and not self._redirected:
            self._redirected = True
            self._open(leader)
            return True
        if call.code() != grpc.StatusCode.UNAVAILABLE:
            return False
        address = next(self._addresses, None)
        if address is None:
            return False
        self._open(address)
        return True

    def initial_metadata(self):
        """Waits until a controller has taken the watch: from then on no update
        is missed. Returns the initial metadata of its answer."""
        while True:
            metadata = self._call.initial_metadata()
            if not (self._call.done() and self._failover(self._call)):
                return metadata

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                update = next(self._call)
            except grpc.RpcError as e:
                if self._failover(e):
                    continue
                raise
            if not self._updated:
                self._updated = True
                self._client._current = self._address
            return update

    def cancel(self):
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()

    def __getattr__(self, name):
        # The current call's other methods: code(), details(), ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._call, name)


def kind_name(kind):
    """'SETTLED' for Kind.SETTLED, and so on."""
    return api_pb2.WatchUpdate.Kind.Name(kind)


def outcome_name(outcome):
    """'delivered' for DELIVERY_OUTCOME_DELIVERED, and so on."""
    return api_pb2.DeliveryOutcome.Name(outcome).replace("DELIVERY_OUTCOME_", "").lower()
