"""End-to-end smoke test of the real Kafka broker that the `kafka_broker` CTest fixture runs.

Creates a topic with 3 partitions, produces keyed messages through Kafka's console producer,
reads them all back through Kafka's console consumer, and checks that nothing was lost,
duplicated or changed, that each key stayed in one partition, and that every partition holds
its messages at consecutive offsets in the order they were produced. Kafka's own Java tools
do the talking (librdkafka belongs to pipeline/), so this tests the broker setup, not rotor.

  /usr/bin/python3 integration_tests/kafka_smoke_test.py [--name ctest] [--messages 600]
"""

import argparse
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools" / "kafka"))
import broker  # noqa: E402  (tools/kafka/broker.py: paths, classpath, metadata request)

PARTITIONS = 3
KEYS = 24
RECORD = re.compile(r"^Partition:(\d+)\tOffset:(\d+)\t([^\t]*)\t(.*)$")


def run_tool(main_class, args, stdin=None, timeout=120):
    cmd = broker.java_command(broker.TOOL_HEAP, main_class, args,
                              broker.HERE / "tools-log4j.properties")
    began = time.monotonic()
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"FAIL: {main_class} exited {done.returncode}\n{done.stdout}{done.stderr}")
    return done.stdout, time.monotonic() - began


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="ctest", help="the broker.sh broker to use")
    parser.add_argument("--messages", type=int, default=600)
    args = parser.parse_args()
    bootstrap = broker.bootstrap_of(args.name)
    host, port = bootstrap.rsplit(":", 1)
    topic = f"rotor-smoke-{uuid.uuid4().hex[:8]}"
    print(f"broker {args.name} at {bootstrap}, topic {topic}, {args.messages} messages")

    _, took = run_tool("org.apache.kafka.tools.TopicCommand",
                       ["--bootstrap-server", bootstrap, "--create", "--topic", topic,
                        "--partitions", str(PARTITIONS), "--replication-factor", "1"])
    _, topics = broker.metadata(host, int(port), [topic])
    check(topics.get(topic) == (0, list(range(PARTITIONS))),
          f"metadata for {topic}: {topics.get(topic)}, want 3 partitions without error")
    print(f"created {topic} with {PARTITIONS} partitions ({took:.1f}s)")

    # Value = key + per-key sequence + global sequence: a reorder, loss or duplicate shows.
    produced, per_key = [], defaultdict(int)
    for i in range(args.messages):
        key = f"user-{(i * 7) % KEYS:02d}"
        produced.append((key, f"{key}#{per_key[key]}@{i}"))
        per_key[key] += 1
    lines = "".join(f"{k}\t{v}\n" for k, v in produced)
    _, took = run_tool("kafka.tools.ConsoleProducer",
                       ["--bootstrap-server", bootstrap, "--topic", topic,
                        "--property", "parse.key=true", "--property", "key.separator=\t",
                        "--producer-property", "acks=all",
                        "--producer-property", "enable.idempotence=true"], stdin=lines)
    print(f"produced {len(produced)} messages with {KEYS} keys ({took:.1f}s)")

    out, took = run_tool("org.apache.kafka.tools.consumer.ConsoleConsumer",
                         ["--bootstrap-server", bootstrap, "--topic", topic, "--from-beginning",
                          "--max-messages", str(args.messages), "--timeout-ms", "60000",
                          "--property", "print.key=true", "--property", "print.partition=true",
                          "--property", "print.offset=true", "--property", "key.separator=\t"])
    by_partition = defaultdict(list)
    for line in out.splitlines():
        match = RECORD.match(line)
        check(match, f"unexpected consumer output line {line!r}")
        p, offset, key, value = match.groups()
        by_partition[int(p)].append((int(offset), key, value))
    consumed = sum(len(v) for v in by_partition.values())
    print(f"consumed {consumed} messages ({took:.1f}s): "
          + ", ".join(f"partition {p}: {len(by_partition[p])}" for p in sorted(by_partition)))

    check(consumed == len(produced), f"consumed {consumed} messages, produced {len(produced)}")
    check(sorted(by_partition) == list(range(PARTITIONS)),
          f"messages landed in partitions {sorted(by_partition)}, want all of 0..2")
    partition_of = {}
    for p, records in by_partition.items():
        records.sort()
        check([o for o, _, _ in records] == list(range(len(records))),
              f"partition {p}: offsets are not 0..{len(records) - 1}")
        for _, key, _ in records:
            check(partition_of.setdefault(key, p) == p,
                  f"key {key} is in partitions {partition_of[key]} and {p}")
        # Per-partition order: the partition's records, by offset, are exactly the produced
        # messages with that partition's keys, in production order.
        want = [(k, v) for k, v in produced if partition_of.get(k) == p]
        got = [(k, v) for _, k, v in records]
        check(got == want, f"partition {p}: content or order differs from what was produced")
    check(len(partition_of) == KEYS, f"{len(partition_of)} keys came back, want {KEYS}")

    run_tool("org.apache.kafka.tools.TopicCommand",
             ["--bootstrap-server", bootstrap, "--delete", "--topic", topic])
    print("PASS: count, content, key->partition and per-partition order all match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
