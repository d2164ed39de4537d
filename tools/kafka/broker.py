"""Runs real single-node Apache Kafka brokers (KRaft combined mode) on loopback for tests.

Run it through tools/kafka/broker.sh; docs/kafka.md is the guide. Commands:

  start     [--name N] [--replace] [--auto-create-topics] [--timeout S]
            format a fresh state dir, start the broker in the background, wait until it is
            ready, print its bootstrap address
  stop      [--name N] [--clean] [--timeout S]   SIGTERM, then SIGKILL; --clean removes state
  status    [--name N]   one line per broker (all of them without --name); exit 3 if not running
  bootstrap [--name N]   print the bootstrap address of a running broker
  tool      [--name N] CLASS ARGS...   run a Kafka CLI class (e.g. org.apache.kafka.tools.
            TopicCommand) with the fetched jars; '{bootstrap}' in ARGS becomes the address

Ready means: the broker's listener accepts a TCP connection AND a Metadata (v1) request over it
returns a broker list containing this node (node.id 1) at our port, i.e. the broker has
registered with its controller and serves clients.

State lives in ${ROTOR_KAFKA_STATE:-$ROTOR_ROOT/build/kafka}/<name>/: server.properties,
log4j.properties, data/ (KRaft metadata + topic logs), server.log (INFO and up), console.log
(the JVM's stdout/stderr: WARN and up), pid, bootstrap. The jars come from tools/kafka/fetch.sh.

Lifecycle: one broker per name; `start` refuses a name that is running unless --replace.
Concurrency: brokers of different names are independent (own ports, own state dir).
Limitations: plaintext only, one node, replication factor 1.
"""

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("ROTOR_ROOT", HERE.parent.parent))
NODE_ID = 1
BROKER_HEAP = "-Xmx512m"
TOOL_HEAP = "-Xmx256m"
EXIT_NOT_RUNNING = 3


class BrokerError(Exception):
    """An expected failure, reported as one message without a traceback."""


# ---- Paths and the fetched jars ---------------------------------------------------------------

def kafka_version():
    text = (HERE / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    if not match:
        raise BrokerError(f"no <kafka.version> in {HERE / 'pom.xml'}")
    return match.group(1)


def kafka_home():
    if os.environ.get("ROTOR_KAFKA_HOME"):
        return Path(os.environ["ROTOR_KAFKA_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    return Path(cache) / "rotor" / f"kafka-{kafka_version()}"


def state_root():
    return Path(os.environ.get("ROTOR_KAFKA_STATE") or ROOT / "build" / "kafka")


def state_dir(name):
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise BrokerError(f"bad broker name '{name}': use letters, digits, '_', '.', '-'")
    return state_root() / name


def java_binary():
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise BrokerError("java not found (JAVA_HOME or PATH): run tools/setup.sh "
                          "(it installs openjdk-17-jre-headless)")
    return java


def classpath():
    libs = kafka_home() / "libs"
    if not (libs / ".complete").is_file():
        raise BrokerError(f"Kafka {kafka_version()} jars missing from {libs}: "
                          "run tools/kafka/fetch.sh")
    return str(libs / "*")


def java_command(heap, main_class, args, log4j=None):
    cmd = [java_binary(), heap, "-XX:+UseSerialGC", "-Djava.awt.headless=true",
           "-cp", classpath()]
    if log4j:
        cmd.append(f"-Dlog4j.configuration=file:{log4j}")
    return cmd + [main_class] + list(args)


def lower_priority():
    """preexec_fn: the broker shares 2 cores with builds and benchmarks."""
    os.nice(int(os.environ.get("ROTOR_KAFKA_NICE", "19")))


# ---- A minimal Kafka protocol client: enough to ask for metadata ------------------------------

def _string(value):
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return buf


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        value = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return value


def metadata(host, port, topics=(), timeout=5.0):
    """Sends Metadata v1 and returns ({node_id: (host, port)}, {topic: (error, [partitions])}).

    topics=() asks for no topics (v1 reads an empty array as "none", null as "all")."""
    body = struct.pack(">i", len(topics)) + b"".join(_string(t) for t in topics)
    request = struct.pack(">hhi", 3, 1, 1) + _string("rotor-broker-probe") + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        r = _Reader(_recv_exact(sock, size))
    if r.take(">i") != 1:
        raise ConnectionError("metadata response with the wrong correlation id")
    brokers = {}
    for _ in range(r.take(">i")):
        node = r.take(">i")
        brokers[node] = (r.string(), r.take(">i"))
        r.string()  # rack
    r.take(">i")  # controller id
    found = {}
    for _ in range(r.take(">i")):
        error, name, _internal = r.take(">h"), r.string(), r.take(">b")
        partitions = []
        for _ in range(r.take(">i")):
            _perror, index, _leader = r.take(">h"), r.take(">i"), r.take(">i")
            for _ in range(2):  # replicas, isr
                for _ in range(r.take(">i")):
                    r.take(">i")
            partitions.append(index)
        found[name] = (error, sorted(partitions))
    return brokers, found


def is_ready(host, port):
    try:
        brokers, _ = metadata(host, port, timeout=2.0)
    except (OSError, struct.error):
        return False
    return brokers.get(NODE_ID) == (host, port)


# ---- Config files -----------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_cluster_id():
    """A Kafka Uuid in its base64 form; Kafka's own never start with '-' (CLI flag confusion)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def write_config(state, broker_port, controller_port, auto_create):
    data = state / "data"
    (state / "server.properties").write_text(f"""\
# Written by tools/kafka/broker.py: single-node KRaft (combined broker + controller) on loopback.
node.id={NODE_ID}
process.roles=broker,controller
controller.quorum.voters={NODE_ID}@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable={"true" if auto_create else "false"}
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.retention.check.interval.ms=60000
# A deleted topic's files go 1 s after the deletion (default 60 s): bench/load.py deletes each
# run's gigabytes of topics before the next run starts.
log.segment.delete.delay.ms=1000
# A killed producer's open transaction is aborted within a second of its timeout (the default
# check runs every 10 s), so the tests with a zombie wait for the timeout they chose.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
""")
    (state / "log4j.properties").write_text(f"""\
# Written by tools/kafka/broker.py: INFO and up to server.log, WARN and up to stderr (which the
# background broker writes to console.log).
log4j.rootLogger=INFO, file, stderr
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={state / "server.log"}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.Threshold=WARN
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
""")


# ---- Process bookkeeping ----------------------------------------------------------------------

def running_pid(state):
    """The pid of this state dir's broker if it is alive (and really is that broker)."""
    try:
        pid = int((state / "pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # A reused pid must not be taken for our broker: check that it runs our server.properties.
    if str(state / "server.properties").encode() not in cmdline:
        return None
    return pid


def tail(path, lines=40):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def stop_pid(pid, timeout):
    """SIGTERM the broker's process group, SIGKILL it after timeout seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return "stopped"
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    return f"killed (no exit {timeout:.0f}s after SIGTERM)"


def _is_zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


# ---- Commands ---------------------------------------------------------------------------------

def start(args):
    state = state_dir(args.name)
    pid = running_pid(state)
    if pid is not None:
        if not args.replace:
            raise BrokerError(f"broker '{args.name}' already runs (pid {pid}, "
                              f"{(state / 'bootstrap').read_text().strip()}): stop it first "
                              "or pass --replace")
        stop_pid(pid, 30)
    java_binary()
    classpath()

    last_error = None
    for attempt in range(1, 4):
        began = time.monotonic()
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        broker_port, controller_port = free_port(), free_port()
        while controller_port == broker_port:
            controller_port = free_port()
        write_config(state, broker_port, controller_port, args.auto_create_topics)
        log4j = state / "log4j.properties"
        fmt = subprocess.run(
            java_command(TOOL_HEAP, "kafka.tools.StorageTool",
                         ["format", "--ignore-formatted", "-t", random_cluster_id(),
                          "-c", str(state / "server.properties")], log4j),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, preexec_fn=lower_priority)
        if fmt.returncode != 0:
            raise BrokerError(f"kafka.tools.StorageTool format failed:\n{fmt.stdout}{fmt.stderr}")

        # Its own session (process group) so `stop` signals the JVM and nothing else, and so a
        # terminal's Ctrl-C does not reach it; its output goes to a file, never to our pipes
        # (ctest waits for every holder of a test's stdout to close it).
        with open(state / "console.log", "wb") as console:
            proc = subprocess.Popen(
                java_command(BROKER_HEAP, "kafka.Kafka", [str(state / "server.properties")],
                             log4j),
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=lower_priority, cwd=state)
        (state / "pid").write_text(f"{proc.pid}\n")

        deadline = began + args.timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if is_ready("127.0.0.1", broker_port):
                bootstrap = f"127.0.0.1:{broker_port}"
                (state / "bootstrap").write_text(bootstrap + "\n")
                print(f"broker.sh: '{args.name}' ready at {bootstrap} (pid {proc.pid}, "
                      f"{time.monotonic() - began:.1f}s, state {state})", file=sys.stderr)
                print(bootstrap)
                return 0
            time.sleep(0.25)

        logs = tail(state / "console.log") + "\n" + tail(state / "server.log")
        if proc.poll() is None:
            stop_pid(proc.pid, 10)
            raise BrokerError(f"broker '{args.name}' not ready after {args.timeout:.0f}s; "
                              f"the end of its logs ({state}):\n{logs}")
        proc.wait()
        if "BindException" in logs or "Address already in use" in logs:
            # Another process took a port between free_port() and the broker's bind: retry.
            last_error = f"port {broker_port} or {controller_port} was taken"
            print(f"broker.sh: {last_error}; retrying ({attempt}/3)", file=sys.stderr)
            continue
        raise BrokerError(f"broker '{args.name}' exited with status {proc.returncode} "
                          f"before it was ready; the end of its logs ({state}):\n{logs}")
    raise BrokerError(f"broker '{args.name}' could not bind its ports: {last_error}")


def stop(args):
    state = state_dir(args.name)
    pid = running_pid(state)
    outcome = "not running"
    if pid is not None:
        outcome = stop_pid(pid, args.timeout)
    (state / "bootstrap").unlink(missing_ok=True)
    if args.clean:
        shutil.rmtree(state, ignore_errors=True)
        outcome += ", state removed"
    elif state.exists():
        outcome += f", logs kept in {state}"
    print(f"broker.sh: '{args.name}' {outcome}", file=sys.stderr)
    return 0


def status(args):
    root = state_root()
    if args.name:
        names = [args.name]
    elif root.is_dir():
        names = sorted(p.name for p in root.iterdir() if (p / "server.properties").exists())
    else:
        names = []
    any_running = False
    for name in names:
        state = state_dir(name)
        pid = running_pid(state)
        if pid is None:
            print(f"{name}\tstopped\t-\t-\t{state}")
        else:
            any_running = True
            bootstrap = (state / "bootstrap").read_text().strip() \
                if (state / "bootstrap").exists() else "starting"
            print(f"{name}\trunning\t{bootstrap}\t{pid}\t{state}")
    return 0 if any_running else EXIT_NOT_RUNNING


def bootstrap_of(name):
    state = state_dir(name)
    if running_pid(state) is None or not (state / "bootstrap").exists():
        raise BrokerError(f"broker '{name}' is not running: tools/kafka/broker.sh start "
                          f"--name {name}")
    return (state / "bootstrap").read_text().strip()


def bootstrap(args):
    print(bootstrap_of(args.name))
    return 0


def tool(args):
    tool_args = list(args.args)
    if any("{bootstrap}" in a for a in tool_args):
        address = bootstrap_of(args.name)
        tool_args = [a.replace("{bootstrap}", address) for a in tool_args]
    log4j = HERE / "tools-log4j.properties"
    cmd = java_command(TOOL_HEAP, args.main_class, tool_args, log4j)
    os.execv(cmd[0], cmd)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="broker.sh", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status", "bootstrap", "tool"):
        p = sub.add_parser(name)
        p.add_argument("--name", default=None if name == "status" else "default",
                       help="which broker (default: 'default')")
        if name == "start":
            p.add_argument("--replace", action="store_true",
                           help="stop a running broker of this name first")
            p.add_argument("--auto-create-topics", action="store_true",
                           help="auto.create.topics.enable=true (default false)")
            p.add_argument("--timeout", type=float, default=90.0,
                           help="seconds to wait for readiness (default 90)")
        if name == "stop":
            p.add_argument("--clean", action="store_true", help="remove the state directory")
            p.add_argument("--timeout", type=float, default=30.0,
                           help="seconds between SIGTERM and SIGKILL (default 30)")
        if name == "tool":
            p.add_argument("main_class")
            p.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        return {"start": start, "stop": stop, "status": status, "bootstrap": bootstrap,
                "tool": tool}[args.command](args)
    except BrokerError as err:
        print(f"broker.sh: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
