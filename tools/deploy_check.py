"""Checks that rotor's deployment files scale out, beyond what their schemas can say.

tools/compose_check.sh runs it (docs/deploy.md); schema validity itself is checked there
(`docker-compose config`, kubernetes-validate). Two commands:

  deploy_check.py compose ROTOR_YAML COMPOSE_FILE [OVERRIDE_FILE...]
      Runs `docker-compose -f COMPOSE_FILE [-f OVERRIDE_FILE...] config` (Debian's
      docker-compose; no engine needed) and reads the file as Compose resolved it. ROTOR_YAML
      is the config the image ships (deploy/rotor.yaml). The `rotor` service must scale with
      `--scale rotor=N`: no container_name or hostname, no
      fixed host port (a range, or none), an anonymous volume on state.dir (never a named
      volume or a host directory, which every replica would share), a stop grace longer than
      delivery.shutdown_timeout_ms plus the time to close; the config must leave
      delivery.transactional_id empty (each replica derives its own from its state), and the
      `topics` service must create enough partitions for three instances.

  deploy_check.py kubernetes DIR ROTOR_YAML --config-out FILE
      DIR holds the manifests (deploy/kubernetes) and a kustomization.yaml naming each. The
      ConfigMap's rotor config is written to FILE (for rotor's own validator) and checked
      against the StatefulSet: the same fields as ROTOR_YAML, transactional_id empty, state.dir
      on the pod's PersistentVolumeClaim, the API port that the probes ask (readiness on
      /readyz, liveness on /healthz), the termination grace, ROTOR_KAFKA_BOOTSTRAP_SERVERS, and
      a memory request covering the config's memory bound.

Prints every finding as "deploy_check.py: FILE: what" and exits 1 when there is one. Runs
with Debian's /usr/bin/python3 and python3-yaml only.
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

PROG = "deploy_check.py"
MIB = 1 << 20

# rotor serve exits within delivery.shutdown_timeout_ms plus about this much (closing the
# clients and the store; docs/configuration.md, delivery.shutdown_timeout_ms).
CLOSE_MARGIN_MS = 10_000
# Memory the config's bound leaves out: the bundle, one window, the process itself (about
# 30 MiB measured with the demo bundle; docs/configuration.md, Memory).
MEMORY_MARGIN = 64 * MIB
# Fixed parts of the memory bound: librdkafka's send queue and prefetched input as rotor sets
# them (docs/configuration.md, Memory).
MEMORY_FIXED = 64 * MIB + 16 * MIB
# The scale-out the docs show: `docker compose up --scale rotor=3`.
SCALE_SHOWN = 3


class Findings:
    def __init__(self):
        self.items = []

    def add(self, where, what):
        self.items.append(f"{PROG}: {where}: {what}")


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rotor_size(value):
    """A rotor size field: a YAML integer or "<digits><B|KiB|MiB|GiB|TiB>"; None otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"(\d+)(B|KiB|MiB|GiB|TiB)", str(value))
    if not m:
        return None
    shift = {"B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m.group(2)]
    return int(m.group(1)) << shift


def kube_quantity(value):
    """A Kubernetes quantity in bytes ("1536Mi", "2G", "1.5Gi", "1000"); None otherwise."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?", str(value))
    if not m:
        return None
    factor = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
              "E": 10**18, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
              "Pi": 1 << 50, "Ei": 1 << 60}[m.group(2)]
    return int(float(m.group(1)) * factor)


def go_duration_ms(value):
    """A Compose duration ("30s", "1m30s", "1500ms") in milliseconds; None otherwise."""
    text = str(value)
    units = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1, "us": 1e-3, "ns": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * units[u] for n, u in parts)


def field(config, dotted):
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def leaf_paths(node, prefix=""):
    """The dotted paths of a config's fields (a map's value counts as one field)."""
    out = set()
    for key, value in (node or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not path.endswith("_properties"):
            out |= leaf_paths(value, path + ".")
        else:
            out.add(path)
    return out


def covers(mount_target, path):
    """Whether a mount at mount_target holds path."""
    target = mount_target.rstrip("/") or "/"
    return path == target or path.startswith(target.rstrip("/") + "/")


def check_rotor_config(findings, where, config, env):
    """What every instance's config needs for scale-out; returns its state.dir."""
    if not isinstance(config, dict):
        findings.add(where, "not a YAML map")
        return None
    if field(config, "delivery.transactional_id") not in (None, ""):
        findings.add(where, "delivery.transactional_id is set: every instance would share it and "
                            "fence the others; leave it empty (each instance derives its own "
                            "from its state directory)")
    state_dir = env.get("ROTOR_STATE_DIR") or field(config, "state.dir")
    if not state_dir:
        findings.add(where, "state.dir is not set")
    return state_dir


# ------------------------------------------------------------------------------------ compose


def compose_port(entry):
    """(host_ip, published, target) of a ports entry in `docker-compose config`'s output,
    short ("127.0.0.1:8470-8479:8470/tcp") or long ({target, published, host_ip}) syntax."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return entry.get("host_ip"), None if published in (None, "") else str(published), \
            str(entry.get("target"))
    text = str(entry).split("/")[0]
    parts = text.rsplit(":", 2)
    if len(parts) == 1:
        return None, None, parts[0]
    if len(parts) == 2:
        return None, parts[0] or None, parts[1]
    return parts[0], parts[1] or None, parts[2]


def compose_mount(entry):
    """(kind, source, target) of a volumes entry: kind is "anonymous", "named", "bind" or
    "tmpfs"; short ("src:dst:mode", "dst") or long ({type, source, target}) syntax."""
    if isinstance(entry, dict):
        kind = entry.get("type", "volume")
        source = entry.get("source")
        if kind == "volume":
            kind = "named" if source else "anonymous"
        return kind, source, entry.get("target")
    parts = str(entry).split(":")
    if len(parts) == 1:
        return "anonymous", None, parts[0]
    source = parts[0]
    kind = "bind" if source.startswith(("/", ".", "~")) else "named"
    return kind, source, parts[1]


def check_compose(rotor_yaml, files):
    findings = Findings()
    where = " + ".join(files)
    command = ["docker-compose", "--project-directory", str(Path(files[0]).parent)]
    for f in files:
        command += ["-f", f]
    run = subprocess.run(command + ["config"], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        findings.add(where, f"`docker-compose config` failed: {run.stderr.strip()}")
        return findings
    compose = yaml.safe_load(run.stdout)
    services = (compose or {}).get("services") or {}
    rotor = services.get("rotor")
    if not isinstance(rotor, dict):
        findings.add(where, "no `rotor` service")
        return findings

    for key in ("container_name", "hostname"):
        if key in rotor:
            findings.add(where, f"service rotor sets {key} ({rotor[key]!r}): every replica of "
                                f"`--scale rotor=N` would get the same one; remove it")
    if rotor.get("scale", 1) != 1:
        findings.add(where, f"service rotor sets scale: {rotor['scale']}; the file's default is "
                            "one instance, `--scale rotor=N` asks for more")

    for entry in rotor.get("ports") or []:
        _, published, target = compose_port(entry)
        if published is None:
            continue  # An ephemeral host port per container.
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", published)
        if not m or m.group(2) is None or int(m.group(2)) <= int(m.group(1)):
            findings.add(where, f"service rotor publishes container port {target} on the fixed "
                                f"host port {published}: a second replica cannot bind it; give "
                                "a range (127.0.0.1:8470-8479:8470) or no host port")

    env = rotor.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env if "=" in item)
    config = load_yaml(rotor_yaml)
    state_dir = check_rotor_config(findings, rotor_yaml, config, env)
    if state_dir:
        mounts = [compose_mount(m) for m in rotor.get("volumes") or []]
        holding = [m for m in mounts if m[2] and covers(m[2], state_dir)]
        if not holding:
            findings.add(where, f"service rotor mounts no volume on state.dir {state_dir}: "
                                "mount an anonymous one (- type: volume, target: ...) so each "
                                "replica's state outlives its container")
        else:
            kind, source, target = max(holding, key=lambda m: len(m[2]))
            if kind != "anonymous":
                findings.add(where, f"service rotor mounts the {kind} {kind_noun(kind)} "
                                    f"{source or ''} on {target}, which holds state.dir "
                                    f"{state_dir}: every replica of `--scale rotor=N` would "
                                    "share it (RocksDB allows one process per directory, and "
                                    "the replicas would share one transactional id); use an "
                                    "anonymous volume")

    shutdown_ms = field(config, "delivery.shutdown_timeout_ms")
    shutdown_ms = 15000 if shutdown_ms is None else shutdown_ms
    grace = rotor.get("stop_grace_period", "10s")
    grace_ms = go_duration_ms(grace)
    if grace_ms is None:
        findings.add(where, f"service rotor: stop_grace_period {grace!r} is not a duration")
    elif grace_ms <= shutdown_ms + CLOSE_MARGIN_MS:
        findings.add(where, f"service rotor: stop_grace_period {grace} is not longer than "
                            f"delivery.shutdown_timeout_ms ({shutdown_ms} ms) plus "
                            f"{CLOSE_MARGIN_MS // 1000} s to close: SIGKILL would cut the drain")

    topics = services.get("topics") or {}
    command = topics.get("command") or ""
    command = " ".join(command) if isinstance(command, list) else str(command)
    counts = [int(n) for n in re.findall(r"--partitions\s+(\d+)", command)]
    if not counts:
        findings.add(where, "service topics creates no topic with --partitions N")
    elif min(counts) < SCALE_SHOWN:
        findings.add(where, f"service topics creates topics of {min(counts)} partitions: "
                            f"fewer than the {SCALE_SHOWN} instances of --scale rotor="
                            f"{SCALE_SHOWN} (an instance without a partition is idle)")
    return findings


def kind_noun(kind):
    return {"named": "volume", "bind": "host directory", "tmpfs": "tmpfs"}.get(kind, "mount")


# --------------------------------------------------------------------------------- kubernetes


def load_manifests(directory, findings):
    """{(kind, name): (file, object)} of every manifest the kustomization lists."""
    kustomization_path = directory / "kustomization.yaml"
    if not kustomization_path.exists():
        findings.add(kustomization_path, "missing")
        return {}
    listed = (load_yaml(kustomization_path) or {}).get("resources") or []
    present = sorted(p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in sorted(set(present) - set(listed)):
        findings.add(kustomization_path, f"does not list {name}: `kubectl apply -k` would skip it")
    objects = {}
    for name in listed:
        path = directory / name
        if not path.exists():
            findings.add(kustomization_path, f"lists {name}, which does not exist")
            continue
        with open(path, encoding="utf-8") as f:
            for obj in yaml.safe_load_all(f):
                if obj:
                    key = (obj.get("kind"), (obj.get("metadata") or {}).get("name"))
                    objects[key] = (path, obj)
    return objects


def find_one(objects, kind, findings, where):
    found = [(k, v) for k, v in objects.items() if k[0] == kind]
    if len(found) != 1:
        findings.add(where, f"expected one {kind}, found {len(found)}")
        return None, None, None
    (_, name), (path, obj) = found[0]
    return name, path, obj


def labels_match(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def check_kubernetes(directory, rotor_yaml, config_out):
    findings = Findings()
    directory = Path(directory)
    objects = load_manifests(directory, findings)
    name, sts_path, sts = find_one(objects, "StatefulSet", findings, directory)
    if sts is None:
        return findings
    spec = sts.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if not labels_match((spec.get("selector") or {}).get("matchLabels"), pod_labels):
        findings.add(sts_path, "spec.selector.matchLabels does not match the pod template's labels")

    # The governing Service: headless, selecting these pods.
    service = objects.get(("Service", spec.get("serviceName")))
    if service is None:
        findings.add(sts_path, f"spec.serviceName {spec.get('serviceName')!r} names no Service "
                               "in the manifests")
    else:
        svc_path, svc = service
        if (svc.get("spec") or {}).get("clusterIP") != "None":
            findings.add(svc_path, "the StatefulSet's Service must be headless (clusterIP: None): "
                                   "it gives each pod its DNS name")
        if not labels_match((svc.get("spec") or {}).get("selector"), pod_labels):
            findings.add(svc_path, "spec.selector does not select the StatefulSet's pods")

    containers = pod.get("containers") or []
    container = next((c for c in containers if c.get("name") == "rotor"), None)
    if container is None:
        findings.add(sts_path, "no container named rotor")
        return findings

    # The config: --config PATH, in a volume from a ConfigMap of the manifests.
    args = (container.get("command") or []) + (container.get("args") or [])
    config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    if config_path is None:
        findings.add(sts_path, "container rotor has no --config PATH argument")
        return findings
    mounts = container.get("volumeMounts") or []
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    config_mount = next((m for m in mounts if covers(m.get("mountPath", ""), config_path)), None)
    volume = volumes.get((config_mount or {}).get("name")) or {}
    config_map_name = (volume.get("configMap") or {}).get("name")
    config_map = objects.get(("ConfigMap", config_map_name))
    if config_mount is None or config_map is None:
        findings.add(sts_path, f"--config {config_path} is not in a volume from a ConfigMap of "
                               "the manifests")
        return findings
    cm_path, cm = config_map
    key = os.path.relpath(config_path, config_mount["mountPath"])
    text = (cm.get("data") or {}).get(key)
    if text is None:
        findings.add(cm_path, f"ConfigMap {config_map_name} has no key {key!r} (the "
                              f"StatefulSet reads {config_path})")
        return findings
    Path(config_out).write_text(text, encoding="utf-8")
    where_config = f"{cm_path} (data.{key})"
    config = yaml.safe_load(text)

    env_entries = container.get("env") or []
    env = {e.get("name"): e.get("value") for e in env_entries}
    state_dir = check_rotor_config(findings, where_config, config, env)
    if isinstance(config, dict):
        reference = leaf_paths(load_yaml(rotor_yaml))
        mine = leaf_paths(config)
        for path in sorted(reference - mine):
            findings.add(where_config, f"lacks {path}, which {rotor_yaml} sets (list every "
                                       "field, as the image's config does)")
        for path in sorted(mine - reference):
            findings.add(where_config, f"sets {path}, which {rotor_yaml} does not have")
    if not any(e.get("name") == "ROTOR_KAFKA_BOOTSTRAP_SERVERS" and
               (e.get("value") or e.get("valueFrom")) for e in env_entries):
        findings.add(sts_path, "container rotor does not set ROTOR_KAFKA_BOOTSTRAP_SERVERS (the "
                               "cluster's Kafka)")

    # state.dir on a PersistentVolumeClaim of the pod's own.
    claims = {(c.get("metadata") or {}).get("name") for c in spec.get("volumeClaimTemplates") or []}
    if state_dir:
        holding = [m for m in mounts if covers(m.get("mountPath", ""), state_dir)]
        mount = max(holding, key=lambda m: len(m["mountPath"])) if holding else None
        if mount is None or mount.get("name") not in claims:
            findings.add(sts_path, f"state.dir {state_dir} is not on a volume of "
                                   "spec.volumeClaimTemplates: each pod needs its own persistent "
                                   "volume there (its state and its transactional id)")
        elif mount.get("readOnly"):
            findings.add(sts_path, f"the volume holding state.dir {state_dir} is read-only")

    # The API port and the probes.
    listen = str(field(config, "api.listen") or "")
    api_port = int(listen.rsplit(":", 1)[1]) if re.search(r":\d+$", listen) else None
    if field(config, "api.enabled") is False or api_port in (None, 0):
        findings.add(where_config, "the probes need the HTTP API: api.enabled true and "
                                   "api.listen on a fixed port")
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    for probe_name, path, required in (("readinessProbe", "/readyz", True),
                                       ("livenessProbe", "/healthz", True),
                                       ("startupProbe", "/healthz", False)):
        probe = container.get(probe_name)
        if probe is None:
            if required:
                findings.add(sts_path, f"container rotor has no {probe_name} (GET {path})")
            continue
        get = probe.get("httpGet") or {}
        if get.get("path") != path:
            findings.add(sts_path, f"{probe_name} must ask GET {path}, asks "
                                   f"{get.get('path')!r}")
        port = get.get("port")
        port = ports.get(port) if isinstance(port, str) else port
        if api_port and port != api_port:
            findings.add(sts_path, f"{probe_name} asks port {get.get('port')!r} ({port}), not "
                                   f"api.listen's {api_port}")

    # Termination grace: the drain on SIGTERM, then closing.
    shutdown_ms = field(config, "delivery.shutdown_timeout_ms")
    shutdown_ms = 15000 if shutdown_ms is None else shutdown_ms
    grace_s = pod.get("terminationGracePeriodSeconds", 30)
    if grace_s * 1000 <= shutdown_ms + CLOSE_MARGIN_MS:
        findings.add(sts_path, f"terminationGracePeriodSeconds {grace_s} is not longer than "
                               f"delivery.shutdown_timeout_ms ({shutdown_ms} ms) plus "
                               f"{CLOSE_MARGIN_MS // 1000} s to close: SIGKILL would cut the "
                               "drain")

    # Memory: the request covers the config's bound.
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(part) or {}):
                findings.add(sts_path, f"container rotor has no resources.{part}.{resource}")
    sizes = [rotor_size(field(config, f)) for f in ("state.block_cache_bytes",
                                                    "state.window_cache_bytes",
                                                    "pipeline.max_inflight_bytes")]
    request = kube_quantity((resources.get("requests") or {}).get("memory"))
    limit = kube_quantity((resources.get("limits") or {}).get("memory"))
    if None not in sizes and request is not None:
        needed = sum(sizes) + MEMORY_FIXED + MEMORY_MARGIN
        if request < needed:
            findings.add(sts_path, f"resources.requests.memory ({request // MIB} MiB) is below "
                                   f"the config's memory bound plus margin ({needed // MIB} MiB: "
                                   "block cache + window cache + in flight + 80 MiB + 64 MiB)")
        if limit is not None and limit < request:
            findings.add(sts_path, "resources.limits.memory is below resources.requests.memory")
    return findings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    compose = sub.add_parser("compose")
    compose.add_argument("rotor_yaml")
    compose.add_argument("files", nargs="+")
    kube = sub.add_parser("kubernetes")
    kube.add_argument("directory")
    kube.add_argument("rotor_yaml")
    kube.add_argument("--config-out", required=True)
    args = parser.parse_args()
    try:
        if args.command == "compose":
            findings = check_compose(args.rotor_yaml, args.files)
        else:
            findings = check_kubernetes(args.directory, args.rotor_yaml, args.config_out)
    except (OSError, yaml.YAMLError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    for line in findings.items:
        print(line, file=sys.stderr)
    return 1 if findings.items else 0


if __name__ == "__main__":
    sys.exit(main())
