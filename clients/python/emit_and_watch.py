#!/usr/bin/env python3
"""Emits an event through dispatchd's API and watches it until it is settled.

    PYTHONPATH=<generated stubs>:clients/python \
      python3 clients/python/emit_and_watch.py --controller 127.0.0.1:7700 \
        --event-id demo.some-event --payload hello

Prints one line per update and exits 0 once the event is settled (its file
deleted), 1 if it was dead-lettered or the watch ended first. The watch is
established before the Emit, so no update is missed.
"""

import argparse
import os
import sys
import uuid

import grpc

import dispatchd_client
from dispatchd_client import Kind


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controller", default=os.environ.get("DISPATCHD_CONTROLLER",
                                                               "127.0.0.1:7700"),
                        help="the controller, or its replicas as ADDR,ADDR,...")
    parser.add_argument("--token", default=os.environ.get("DISPATCHD_API_TOKEN")
                        or os.environ.get("DISPATCHD_TOKEN"))
    parser.add_argument("--event-id", default="demo.some-event")
    parser.add_argument("--payload", default="hello")
    parser.add_argument("--host", default="", help="the agent that writes the file")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="give up watching after this many seconds")
    args = parser.parse_args()

    with dispatchd_client.Client(args.controller, token=args.token) as client:
        updates = client.watch(event_id=args.event_id, timeout=args.timeout)
        try:
            # The server sends the stream's initial metadata once the watcher
            # is registered: from then on no update of the event is missed.
            updates.initial_metadata()
            sent = client.emit(event_id=args.event_id, payload=args.payload.encode(),
                               host=args.host, idempotency_key=str(uuid.uuid4()))
            print("emitted %s as %s on %s" % (sent.event_id, sent.path, sent.agent_id),
                  flush=True)
            for update in updates:
                line = "%-13s %s" % (dispatchd_client.kind_name(update.kind), update.event_id)
                if update.recipient.container_name:
                    line += " -> " + update.recipient.container_name
                if update.kind == Kind.DELIVERY:
                    line += " " + dispatchd_client.outcome_name(update.outcome)
                if update.detail:
                    line += " (" + update.detail + ")"
                print(line, flush=True)
                if update.kind == Kind.SETTLED:
                    return 0
                if update.kind == Kind.DEAD_LETTERED:
                    return 1
        except grpc.RpcError as error:
            print("%s: %s" % (error.code().name, error.details()), file=sys.stderr)
        finally:
            updates.cancel()
        return 1


if __name__ == "__main__":
    sys.exit(main())
