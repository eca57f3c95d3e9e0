#!/usr/bin/env python3
"""A cairn device that takes its update through AWS IoT Jobs, written with the AWS IoT Device SDK
for Python (awsiotsdk, pinned in tools/requirements.txt): the Jobs client nobody in this project
wrote, against the relay playing the Jobs service on Mosquitto (docs/jobs.md).

It connects with its own client certificate (client id = thing name), listens on notify-next,
calls start-next, takes the cairn delivery out of the job document, runs the device boot check on
it through `cairn-device-check` (the host build of the verifier), and updates the execution:
SUCCEEDED when the check passes and the install works, REJECTED when the boot check refuses the
delivery, FAILED when the install fails (`--fail-first N`: the first N executions fail, so the
relay's retry is seen). With `--probe` it then sends the bad requests of the issue's tests
(invalid JSON, a wrong expectedVersion, a move out of a terminal state, another job's id, and an
update on another thing's topic) and reports what came back. With `--never-answer` it starts its
execution and then says nothing more, as a device that hung or lost power would: the relay's
in-progress timeout makes the execution TIMED_OUT, and the device reports the notify-next that
tells it so.

Every event is one JSON line on stdout; the Rust test (tools/fleet-sim/tests/jobs_sdk.rs) reads
them.
"""

import argparse
import base64
import hashlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import time

from awscrt import mqtt
from awsiot import iotjobs, mqtt_connection_builder

QOS = mqtt.QoS.AT_LEAST_ONCE


def say(**event):
    print(json.dumps(event, sort_keys=True), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--thing", required=True)
    p.add_argument("--check", required=True,
                   help="JSON list: the cairn-device-check command line, without --delivery")
    p.add_argument("--executions", type=int, default=1, help="executions to handle")
    p.add_argument("--fail-first", type=int, default=0,
                   help="report FAILED (flash-write) for the first N executions")
    p.add_argument("--tamper", action="store_true",
                   help="flip a byte of the delivery before the boot check")
    p.add_argument("--probe", action="store_true", help="send the bad requests afterwards")
    p.add_argument("--never-answer", action="store_true",
                   help="start the execution, then never update it (it must time out)")
    p.add_argument("--foreign-job", help="a job id this thing has no execution of")
    p.add_argument("--other-thing", help="another thing, whose topics the ACL must close")
    p.add_argument("--other-job", help="the other thing's job id")
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    thing = args.thing

    conn = mqtt_connection_builder.mtls_from_path(
        endpoint="127.0.0.1", port=args.port, cert_filepath=args.cert,
        pri_key_filepath=args.key, ca_filepath=args.ca, client_id=thing,
        clean_session=True, keep_alive_secs=30)
    conn.connect().result(timeout=20)
    say(event="connected", thing=thing)
    jobs = iotjobs.IotJobsClient(conn)
    events = queue.Queue()

    def put(kind):
        return lambda response: events.put((kind, response))

    subs = [
        jobs.subscribe_to_next_job_execution_changed_events(
            iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=thing), QOS,
            put("notify-next")),
        jobs.subscribe_to_start_next_pending_job_execution_accepted(
            iotjobs.StartNextPendingJobExecutionSubscriptionRequest(thing_name=thing), QOS,
            put("start-accepted")),
        jobs.subscribe_to_start_next_pending_job_execution_rejected(
            iotjobs.StartNextPendingJobExecutionSubscriptionRequest(thing_name=thing), QOS,
            put("rejected")),
        jobs.subscribe_to_update_job_execution_accepted(
            iotjobs.UpdateJobExecutionSubscriptionRequest(thing_name=thing, job_id="+"), QOS,
            put("update-accepted")),
        jobs.subscribe_to_update_job_execution_rejected(
            iotjobs.UpdateJobExecutionSubscriptionRequest(thing_name=thing, job_id="+"), QOS,
            put("rejected")),
    ]
    for future, _ in subs:
        future.result(timeout=20)
    if args.other_thing:
        # The ACL gives this thing nothing of another's: whatever arrives here is a leak.
        def leak(topic, payload, **_kw):
            say(event="leak", topic=topic)
        future, _ = conn.subscribe(
            topic=f"$aws/things/{args.other_thing}/jobs/#", qos=QOS, callback=leak)
        future.result(timeout=20)

    deadline = time.monotonic() + args.timeout
    tokens = iter(range(1, 1_000_000))

    def next_event(kinds):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                say(event="timeout", waiting_for=sorted(kinds))
                sys.exit(4)
            try:
                kind, response = events.get(timeout=left)
            except queue.Empty:
                continue
            if kind in kinds:
                return kind, response

    def start_next():
        token = f"start-{next(tokens)}"
        jobs.publish_start_next_pending_job_execution(
            iotjobs.StartNextPendingJobExecutionRequest(
                thing_name=thing, client_token=token,
                status_details={"agent": "awsiotsdk-python"}), QOS).result(timeout=20)
        return token

    handled = 0
    start_next()
    while handled < args.executions:
        kind, response = next_event({"start-accepted", "notify-next", "rejected"})
        if kind == "rejected":
            say(event="rejected", code=response.code, token=response.client_token)
            continue
        if kind == "notify-next":
            if response.execution is not None and response.execution.status == "QUEUED":
                start_next()
            continue
        execution = response.execution
        if execution is None:
            continue  # nothing pending yet: notify-next will say when
        handled += 1
        doc = execution.job_document
        if args.never_answer:
            never_answer(execution, response, next_event)
            conn.disconnect().result(timeout=20)
            say(event="done")
            return
        say(event="started", job=execution.job_id, status=execution.status,
            version=execution.version_number, execution=execution.execution_number,
            token=response.client_token, queued_at=int(execution.queued_at.timestamp()),
            started_at=int(execution.started_at.timestamp()),
            release=doc["release"], campaign=doc["campaign"],
            size=doc["delivery"]["size"])
        delivery = base64.b64decode(doc["delivery"]["data"])
        if hashlib.sha256(delivery).hexdigest() != doc["delivery"]["sha256"]:
            say(event="document-digest-mismatch")
        if args.tamper:
            delivery = bytearray(delivery)
            delivery[len(delivery) // 2] ^= 0xFF
            delivery = bytes(delivery)
        with tempfile.NamedTemporaryFile(suffix=".delivery", delete=False) as f:
            f.write(delivery)
            path = f.name
        try:
            check = subprocess.run(json.loads(args.check) + ["--delivery", path],
                                   capture_output=True, text=True, timeout=60)
        finally:
            os.unlink(path)
        verdict = json.loads(check.stdout.strip().splitlines()[-1]) if check.stdout.strip() else {}
        detail = verdict.get("detail", check.stderr.strip()[:100] or "no-verdict")
        say(event="checked", exit=check.returncode, verdict=verdict)
        if check.returncode == 0 and handled <= args.fail_first:
            status, details = "FAILED", {"boot-check": detail, "install": "flash-write"}
        elif check.returncode == 0:
            status, details = "SUCCEEDED", {"boot-check": detail, "installed": doc["release"]}
        elif check.returncode == 1:
            status, details = "REJECTED", {"boot-check": detail}
        else:
            status, details = "FAILED", {"install": detail}
        token = f"update-{next(tokens)}"
        jobs.publish_update_job_execution(
            iotjobs.UpdateJobExecutionRequest(
                thing_name=thing, job_id=execution.job_id, status=status,
                status_details=details, expected_version=execution.version_number,
                execution_number=execution.execution_number,
                include_job_execution_state=True, client_token=token), QOS).result(timeout=20)
        kind, response = next_event({"update-accepted", "rejected"})
        if kind == "rejected":
            say(event="update-rejected", code=response.code, token=response.client_token)
            continue
        state = response.execution_state
        say(event="updated", status=state.status, version=state.version_number,
            details=state.status_details, token=response.client_token, job=execution.job_id)
        last = execution

    if args.probe:
        probe(args, conn, jobs, last, next_event)
    conn.disconnect().result(timeout=20)
    say(event="done")


def never_answer(execution, response, next_event):
    """Started, then silent: waits until notify-next says the execution is no longer the next one
    (the relay timed it out: the next is none, or the retry's new executionNumber)."""
    say(event="started", job=execution.job_id, status=execution.status,
        version=execution.version_number, execution=execution.execution_number,
        token=response.client_token)
    while True:
        _, notice = next_event({"notify-next"})
        nxt = notice.execution
        if nxt is None or nxt.job_id != execution.job_id or \
                nxt.execution_number != execution.execution_number:
            say(event="moved-on",
                next_execution=None if nxt is None else nxt.execution_number,
                next_status=None if nxt is None else nxt.status)
            return


def probe(args, conn, jobs, last, next_event):
    """Bad requests: each must come back rejected with AWS's code, and change nothing."""
    thing = args.thing
    topic = f"$aws/things/{thing}/jobs/{last.job_id}/update"
    conn.publish(topic=topic, payload=b"{not json", qos=QOS)[0].result(timeout=20)
    cases = [
        ("wrong-version", last.job_id, dict(status="IN_PROGRESS", expected_version=1)),
        ("out-of-terminal", last.job_id, dict(status="IN_PROGRESS")),
    ]
    if args.foreign_job:
        cases.append(("foreign-job", args.foreign_job, dict(status="SUCCEEDED")))
    for token, job, fields in cases:
        jobs.publish_update_job_execution(
            iotjobs.UpdateJobExecutionRequest(
                thing_name=thing, job_id=job, client_token=token, **fields),
            QOS).result(timeout=20)
    if args.other_thing and args.other_job:
        # On the other thing's own topic: Mosquitto's ACL drops it (MQTT 3.1.1: still PUBACKed).
        payload = json.dumps({"status": "SUCCEEDED", "clientToken": "other-thing"})
        conn.publish(topic=f"$aws/things/{args.other_thing}/jobs/{args.other_job}/update",
                     payload=payload, qos=QOS)[0].result(timeout=20)
    seen = 0
    expected = 1 + len(cases)
    while seen < expected:
        kind, response = next_event({"rejected", "update-accepted"})
        seen += 1
        if kind == "rejected":
            say(event="probe", token=response.client_token, code=response.code,
                state=None if response.execution_state is None
                else response.execution_state.status)
        else:
            say(event="probe-accepted", token=response.client_token)
    time.sleep(1.0)  # time for a leak to show


if __name__ == "__main__":
    main()
