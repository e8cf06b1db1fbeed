#!/usr/bin/env python3
"""The project's own rules for its deployment files, beyond schema validity
(which `docker compose config` and kubernetes-validate check): pinned images,
health-gated start order, secrets only from files, non-root images, the log
pipeline's retention and fields, probes/resources/HPAs in Kubernetes, and a
GitHub workflow that mirrors .ci/run.

Usage: deploy_policy.py RENDERED_K8S.yaml...   (from scripts/check-deploy.sh)
Prints one line per rule group; exits 1 listing every broken rule.
"""
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVICES = ["user-service", "product-service", "order-service", "payment-service", "notification-service"]
# What is built and deployed from this repository: the services and the web front.
APPS = SERVICES + ["web"]
INFRA = ["postgres", "redis", "kafka", "kafdrop", "otel-collector", "jaeger", "prometheus", "alertmanager",
         "grafana", "loki", "promtail"]
# The configs that stand at the top level, beside docker-compose.yml (as in
# the system minishop replaces), and where compose mounts each from.
TOP_LEVEL = {"prometheus.yml": "prometheus", "loki-config.yml": "loki", "promtail-config.yml": "promtail"}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY|PUBLIC_KEY)$")
problems: list[str] = []


def check(ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


def load(path: str):
    """The YAML file at `path`; a missing one is a broken rule, read as empty."""
    file = ROOT / path
    if not file.exists():
        problems.append(f"{path} is missing")
        return {}
    return yaml.safe_load(file.read_text())


def compose_rules() -> None:
    compose = load("docker-compose.yml")
    services = compose["services"]
    secrets = compose.get("secrets", {})
    for name in APPS + INFRA:
        check(name in services, f"compose: service {name} is missing")
    for name, svc in services.items():
        image = svc.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        check(tag not in ("", "latest"), f"compose: {name}: image {image!r} is not pinned to a version")
        for dep, spec in (svc.get("depends_on") or {}).items():
            cond = spec.get("condition") if isinstance(spec, dict) else None
            check(cond is not None, f"compose: {name} depends on {dep} without a condition")
            if cond == "service_healthy":
                target = services.get(dep, {})
                has_check = "healthcheck" in target or dep in SERVICES
                check(has_check, f"compose: {name} waits for {dep} to be healthy, but {dep} has no health check")
        env = svc.get("environment") or {}
        for key, value in env.items():
            check(not SECRET_NAME.search(key), f"compose: {name}: {key} is a literal secret; use {key}_FILE")
            if key.endswith("_FILE") or key.endswith("__FILE"):
                secret = str(value).removeprefix("/run/secrets/")
                check(str(value).startswith("/run/secrets/") and secret in (svc.get("secrets") or []),
                      f"compose: {name}: {key}={value} is not a secret mounted into the service")
        for volume in svc.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                check((ROOT / source).exists(), f"compose: {name} mounts {source}, which does not exist")
    for name in SERVICES:
        svc = services.get(name, {})
        check(svc.get("build", {}).get("args", {}).get("SERVICE") == name,
              f"compose: {name} is not built from the Dockerfile with SERVICE={name}")
        deps = svc.get("depends_on") or {}
        for dep, cond in [("postgres", "service_healthy"), ("redis", "service_healthy"),
                          ("kafka", "service_healthy")]:
            check(deps.get(dep, {}).get("condition") == cond, f"compose: {name} does not wait for {dep} ({cond})")
        check((svc.get("labels") or {}).get("logging") == "promtail", f"compose: {name}'s logs are not shipped")
    for name, spec in secrets.items():
        check("file" in spec, f"compose: secret {name} does not come from a file")
    # Least exposure: only what a user opens is published, on loopback only.
    published = {"kafdrop", "jaeger", "prometheus", "alertmanager", "grafana", *APPS}
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            check(name in published, f"compose: {name} publishes {port}; only the REST APIs, web and UIs may")
            check(str(port).startswith("127.0.0.1:"), f"compose: {name} publishes {port} beyond 127.0.0.1")
    superuser = services["postgres"]["environment"]["POSTGRES_USER"]
    roles = set()
    for name in SERVICES:
        env = services.get(name, {}).get("environment") or {}
        role = re.sub(r"^postgres://([^@:]+).*$", r"\1", str(env.get("DATABASE_URL", "")))
        check(role != superuser, f"compose: {name} connects to PostgreSQL as the superuser")
        check(role not in roles, f"compose: {name} shares its database role {role}")
        roles.add(role)
    for name, svc in services.items():
        if "jwt_private.pem" in (svc.get("secrets") or []):
            check(name == "user-service", f"compose: {name} mounts the JWT private key")
    # Internal gRPC is mutual TLS: both gRPC services have their own
    # certificate, and order-service dials product-service over https.
    for name in ("product-service", "order-service"):
        env = services[name].get("environment") or {}
        check(env.get("GRPC_TLS", "on") == "on", f"compose: {name} turns gRPC TLS off")
        check(env.get("TLS_CERT_FILE") == f"/run/secrets/tls_{name}.pem",
              f"compose: {name} does not present its own certificate")
    check(str(services["order-service"]["environment"].get("PRODUCT_GRPC_URL", "")).startswith("https://"),
          "compose: order-service calls product-service without TLS")
    grafana = services["grafana"]["environment"].get("GF_SECURITY_ADMIN_PASSWORD__FILE", "")
    check(not grafana.endswith("/admin_password"), "compose: Grafana's admin password is the shop admin's")
    # The broker: every listener the network can reach asks for a SCRAM
    # login, and each saga service logs in as itself.
    kafka = services["kafka"]["environment"]
    protocols = dict(p.split(":", 1) for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener in kafka["KAFKA_LISTENERS"].split(","):
        name, address = listener.split("://", 1)
        check(protocols.get(name, "").startswith("SASL_") or address.startswith("127.0.0.1:"),
              f"compose: Kafka's {name} listener takes clients without a login beyond loopback")
    check(kafka.get("KAFKA_SASL_ENABLED_MECHANISMS") == "SCRAM-SHA-512", "compose: Kafka does not offer SCRAM-SHA-512")
    for name in ("order-service", "payment-service", "notification-service"):
        env = services[name].get("environment") or {}
        check(env.get("KAFKA_SASL_USERNAME") == name, f"compose: {name} does not log in to Kafka as itself")
        check(name in str(kafka.get("KAFKA_LOGINS", "")).split(), f"compose: Kafka makes no login for {name}")
    # A laptop survives it: a memory limit and a rotated log everywhere.
    total = 0
    for name, svc in services.items():
        limit = str(svc.get("mem_limit", ""))
        match = re.fullmatch(r"(\d+)([mg])", limit)
        check(match is not None, f"compose: {name} has no memory limit (mem_limit)")
        if match:
            total += int(match[1]) * (1024 if match[2] == "g" else 1)
        options = (svc.get("logging") or {}).get("options", {})
        check((svc.get("logging") or {}).get("driver") == "json-file" and "max-size" in options and "max-file" in options,
              f"compose: {name}'s log is not rotated (logging: json-file with max-size and max-file)")
    check(total <= 6 * 1024, f"compose: the memory limits add up to {total} MB, more than a laptop's 6 GB")
    # The JVMs' heaps fit their containers.
    check("-Xmx" in str(services["kafka"]["environment"].get("KAFKA_HEAP_OPTS", "")), "compose: Kafka's heap is not bounded")
    # One copy of each config, at the top level, mounted by compose.
    for config, name in TOP_LEVEL.items():
        check((ROOT / config).exists(), f"{config} is not at the top level")
        sources = [str(v).split(":", 1)[0] for v in services.get(name, {}).get("volumes") or []]
        check(f"./{config}" in sources, f"compose: {name} does not mount ./{config}")
        check(not list((ROOT / "deploy").rglob(config)), f"a second {config} stands under deploy/")
    # Traces: the services send OTLP to the collector, which exports to a
    # Jaeger v2; alerts go to Alertmanager.
    for name in SERVICES:
        env = services[name].get("environment") or {}
        check(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://otel-collector:4317",
              f"compose: {name} does not send traces to the OpenTelemetry Collector")
    jaeger = services["jaeger"].get("image", "")
    check(jaeger.startswith("jaegertracing/jaeger:2."), f"compose: Jaeger {jaeger} is not v2")
    prometheus = load("prometheus.yml")
    targets = [t for a in (prometheus.get("alerting") or {}).get("alertmanagers", [])
               for c in a.get("static_configs", []) for t in c.get("targets", [])]
    check("alertmanager:9093" in targets, "prometheus.yml: alerts are not sent to Alertmanager")
    # Health checks test what they claim: PostgreSQL over TCP, as clients connect.
    pg_check = " ".join(services["postgres"].get("healthcheck", {}).get("test", []))
    check("-h 127.0.0.1" in pg_check or "-h localhost" in pg_check, "compose: PostgreSQL's health check uses the socket, not TCP")
    check("/tmp/minishop-ready" in " ".join(services["kafka"].get("healthcheck", {}).get("test", [])),
          "compose: Kafka is healthy before its logins and topics exist")
    # Grafana's trace-to-logs query selects streams that exist: a selector
    # with an empty value is refused by Loki.
    sources = load("deploy/grafana/provisioning/datasources/datasources.yml")["datasources"]
    for source in sources:
        query = (source.get("jsonData") or {}).get("tracesToLogsV2", {}).get("query")
        if query is None:
            continue
        check('__span.tags' not in query and re.search(r'\{[^}]*=~?"[^"$]', query) is not None,
              f"grafana: {source['name']}'s trace-to-logs query {query!r} can select nothing")
        check("__trace.traceId" in query and "trace_id" in query,
              f"grafana: {source['name']}'s trace-to-logs query does not match the trace_id")
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"]
    check("kafka:" in advertised and "localhost:" in advertised,
          "compose: Kafka must be advertised to both the compose network and the host")
    # Promtail's positions file lives on a named volume.
    positions = pathlib.PurePosixPath(load("promtail-config.yml").get("positions", {}).get("filename", "/"))
    named = [v.split(":")[1] for v in services["promtail"]["volumes"] if not v.startswith(("./", "/"))]
    check(any(positions.is_relative_to(m) for m in named), "compose: promtail's positions file is not on a volume")
    print(f"compose: {len(services)} services, {len(secrets)} secrets from files")


def dockerfile_rules() -> None:
    text = (ROOT / "Dockerfile").read_text()
    check(len(re.findall(r"^FROM ", text, re.M)) >= 2, "Dockerfile: not multi-stage")
    # A dependency layer: the dependencies are compiled from the manifests
    # (cargo chef cook) before the sources are copied in, in a stage that
    # takes no SERVICE, so five images share one build.
    build = text[text.find(" AS build"):text.find(" AS runtime")]
    cook, copy = build.find("cargo chef cook"), build.find("COPY . .")
    check(0 <= cook < copy, "Dockerfile: no dependency layer (cargo chef cook before the sources are copied)")
    check("ARG SERVICE" not in text[:text.find(" AS runtime")], "Dockerfile: the build stage depends on SERVICE")
    check(re.search(r"^USER (?!root)", text, re.M) is not None, "Dockerfile: the runtime does not drop root")
    check(re.search(r"^HEALTHCHECK ", text, re.M) is not None, "Dockerfile: no HEALTHCHECK")
    print("Dockerfile: multi-stage, a shared dependency layer, non-root, health-checked")


def logging_rules() -> None:
    loki = load("loki-config.yml")
    compactor = loki.get("compactor", {})
    check(compactor.get("retention_enabled") is True, "loki: the compactor does not enforce retention")
    check("delete_request_store" in compactor, "loki: retention needs compactor.delete_request_store")
    check(re.fullmatch(r"\d+[hdw]", str(loki.get("limits_config", {}).get("retention_period", ""))) is not None,
          "loki: limits_config.retention_period is not set")
    promtail = load("promtail-config.yml")
    stages = [s for job in promtail.get("scrape_configs", []) for s in job.get("pipeline_stages", [])]
    json_fields = {k for s in stages if "json" in s for k in s["json"]["expressions"]}
    check({"level", "trace_id"} <= json_fields, "promtail: level and trace_id are not extracted from the JSON")
    check(any("level" in (s.get("labels") or {}) for s in stages), "promtail: level is not a label")
    check(any("loki:3100" in c["url"] for c in promtail.get("clients", [])), "promtail: does not push to loki")
    print("logs: Loki retention by the compactor; Promtail parses level and trace_id")


def k8s_rules(paths: list[str]) -> None:
    for path in paths:
        docs = [d for d in yaml.safe_load_all(open(path)) if d]
        kinds = {}
        for d in docs:
            kinds.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        deployments = kinds.get("Deployment", {})
        check(sorted(deployments) == sorted(APPS), f"{path}: Deployments {sorted(deployments)} are not the five services and web")
        for name, d in deployments.items():
            pod = d["spec"]["template"]["spec"]
            check(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{path}: {name} may run as root")
            for c in pod["containers"]:
                check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/ready", f"{path}: {name}: readiness is not /ready")
                check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/health", f"{path}: {name}: liveness is not /health")
                res = c.get("resources", {})
                check("requests" in res and "limits" in res, f"{path}: {name}: no resource requests and limits")
                for ref in c.get("envFrom", []):
                    cm = ref.get("configMapRef", {}).get("name")
                    check(cm is None or cm in kinds.get("ConfigMap", {}), f"{path}: {name}: ConfigMap {cm} is not defined")
                for env in c.get("env", []):
                    check(not SECRET_NAME.search(env["name"]), f"{path}: {name}: {env['name']} is a literal secret")
            check(name in kinds.get("Service", {}), f"{path}: {name} has no Service")
            # Each pod mounts only the secret keys it uses, and a gRPC
            # service its own certificate.
            mounted = {item["key"] for v in pod.get("volumes", []) for item in (v.get("secret") or {}).get("items", [])}
            if name in ("product-service", "order-service"):
                check({"tls_ca.pem", f"tls_{name}.pem", f"tls_{name}-key.pem"} <= mounted,
                      f"{path}: {name} does not mount its gRPC certificate")
            for volume in pod.get("volumes", []):
                secret = volume.get("secret")
                if secret is None:
                    continue
                keys = [item["key"] for item in secret.get("items", [])]
                check(bool(keys), f"{path}: {name} mounts the whole Secret {secret.get('secretName')}")
                check(name == "user-service" or "jwt_private.pem" not in keys,
                      f"{path}: {name} mounts the JWT private key")
                check(not any(k.startswith("tls_") and k != "tls_ca.pem" and not k.startswith(f"tls_{name}")
                              for k in keys), f"{path}: {name} mounts another service's certificate")
                role = name.replace("-", "_")
                check(not any(k.startswith("db_") and k != f"db_{role}" for k in keys),
                      f"{path}: {name} mounts another service's database password")
        # NetworkPolicies: every service's pods are selected by a policy, and
        # product-service's gRPC (which moves stock) admits order-service only.
        policies = kinds.get("NetworkPolicy", {}).values()

        def selects(policy, service):
            sel = policy["spec"]["podSelector"]
            if sel.get("matchLabels", {}).get("app.kubernetes.io/name") == service:
                return True
            return any(e["key"] == "app.kubernetes.io/name" and e["operator"] == "In" and service in e["values"]
                       for e in sel.get("matchExpressions", []))
        for name in SERVICES:
            check(any(selects(p, name) for p in policies), f"{path}: no NetworkPolicy selects {name}'s pods")
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                if any(port.get("port") == "grpc" for port in rule.get("ports", [])) and selects(policy, "product-service"):
                    sources = [f.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                               for f in rule.get("from", [])]
                    check(sources == ["order-service"], f"{path}: product-service's gRPC admits {sources or 'anyone'}")
        # order-service dials product-service over TLS. Broker logins
        # (components/kafka-users): a service that logs in has a KafkaUser of
        # its name whose ACLs name only the saga's topics and that service's
        # own consumer group.
        users = kinds.get("KafkaUser", {})
        for name, d in deployments.items():
            env = {e["name"]: e.get("value", "") for c in d["spec"]["template"]["spec"]["containers"]
                   for e in c.get("env", [])}
            if name == "order-service":
                check(env.get("PRODUCT_GRPC_URL", "").startswith("https://"),
                      f"{path}: order-service calls product-service without TLS")
            login = env.get("KAFKA_SASL_USERNAME")
            if login is None:
                continue
            check(login == name, f"{path}: {name} logs in to the broker as {login}")
            user = users.get(login, {}).get("spec", {})
            check(user.get("authentication", {}).get("type") == "scram-sha-512",
                  f"{path}: no SCRAM KafkaUser {login}")
            for acl in user.get("authorization", {}).get("acls", []):
                res = acl["resource"]
                allowed = {"topic": {"order_events", "order_events.dlq"}, "group": {name}}.get(res["type"], set())
                check(res.get("name") in allowed and res.get("patternType", "literal") == "literal",
                      f"{path}: KafkaUser {login} is allowed {res} beyond its own topics and group")
        hpas = kinds.get("HorizontalPodAutoscaler", {})
        for name in ["order-service", "payment-service", "notification-service"]:
            target = hpas.get(name, {}).get("spec", {}).get("scaleTargetRef", {}).get("name")
            check(target == name, f"{path}: no HPA scales {name}")
        for ing in kinds.get("Ingress", {}).values():
            for rule in ing["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    svc = p["backend"]["service"]
                    ports = [port["name"] for port in kinds.get("Service", {}).get(svc["name"], {}).get("spec", {}).get("ports", [])]
                    check(svc["port"].get("name") in ports, f"{path}: Ingress {p['path']} points at {svc['name']}:{svc['port']}, which does not exist")
        # Images pinned to a tag that is not `latest`.
        for kind in ("Deployment", "Job"):
            for name, d in kinds.get(kind, {}).items():
                for c in d["spec"]["template"]["spec"]["containers"]:
                    image = c["image"]
                    tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
                    check(tag not in ("", "latest"), f"{path}: {name}'s image {image} is not pinned to a tag")
        # Disruptions and spreading: a PDB per Deployment, replicas spread
        # over nodes and zones, and no `replicas` where an HPA owns the count.
        pdbs = kinds.get("PodDisruptionBudget", {}).values()
        for name, d in deployments.items():
            check(any(p["spec"]["selector"].get("matchLabels", {}).get("app.kubernetes.io/name") == name for p in pdbs),
                  f"{path}: no PodDisruptionBudget for {name}")
            keys = {t["topologyKey"] for t in d["spec"]["template"]["spec"].get("topologySpreadConstraints", [])}
            check({"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys,
                  f"{path}: {name}'s pods are not spread over nodes and zones")
            if name in hpas:
                check("replicas" not in d["spec"], f"{path}: {name} sets replicas, which its HPA owns")
        # The databases: a Job makes each service's role and database with
        # the same script as compose, mounting only the roles' passwords.
        jobs_ = kinds.get("Job", {})
        check("minishop-databases" in jobs_, f"{path}: no Job makes the services' databases")
        for job in jobs_.values():
            keys = {i["key"] for v in job["spec"]["template"]["spec"].get("volumes", [])
                    for i in (v.get("secret") or {}).get("items", [])}
            check(all(k.startswith("db_") for k in keys), f"{path}: the databases Job mounts {sorted(keys)}")
        # Topics: replicated as configured, never fewer replicas than the
        # in-sync minimum that acks=all waits for.
        config = next((cm.get("data", {}) for cm in kinds.get("ConfigMap", {}).values()
                       if cm["metadata"]["name"] == "minishop-config"), {})
        check(str(config.get("KAFKA_REPLICATION_FACTOR", "")).isdigit(),
              f"{path}: KAFKA_REPLICATION_FACTOR is not configured")
        for topic in kinds.get("KafkaTopic", {}).values():
            spec = topic["spec"]
            isr = int(spec.get("config", {}).get("min.insync.replicas", 1))
            check(spec.get("replicas", 1) > isr, f"{path}: KafkaTopic {spec.get('topicName')} has {spec.get('replicas')} "
                                                  f"replicas for min.insync.replicas={isr}: one broker lost stops writes")
        # gRPC to product-service goes through a headless Service, so the
        # client balances over every pod.
        services_ = kinds.get("Service", {})
        url = next((e.get("value", "") for c in deployments.get("order-service", {}).get("spec", {}).get("template", {})
                    .get("spec", {}).get("containers", []) for e in c.get("env", []) if e["name"] == "PRODUCT_GRPC_URL"), "")
        host = re.sub(r"^https?://([^:/]+).*$", r"\1", url)
        grpc = services_.get(host, {}).get("spec", {})
        check(grpc.get("clusterIP") == "None" and grpc.get("selector", {}).get("app.kubernetes.io/name") == "product-service",
              f"{path}: order-service dials {host}, not a headless Service of product-service's pods")
        resolve = next((e.get("value", "0") for c in deployments.get("order-service", {}).get("spec", {}).get("template", {})
                        .get("spec", {}).get("containers", []) for e in c.get("env", [])
                        if e["name"] == "PRODUCT_GRPC_RESOLVE_SECS"), "0")
        check(int(resolve) > 0, f"{path}: order-service does not balance over product-service's pods (PRODUCT_GRPC_RESOLVE_SECS)")
        # Where the Prometheus Operator is used: its job label is the one the
        # alerts select on, and the PrometheusRule is alerts.yml's.
        for monitor in kinds.get("ServiceMonitor", {}).values():
            label = monitor["spec"].get("jobLabel")
            values = {svc["metadata"].get("labels", {}).get(label) for svc in services_.values()}
            check(values == {"minishop"}, f"{path}: ServiceMonitor jobs would be {sorted(map(str, values))}, "
                                          "not the job=\"minishop\" the alerts select")
        for rule in kinds.get("PrometheusRule", {}).values():
            alerts = load("deploy/prometheus/alerts.yml")["groups"]
            check(rule["spec"]["groups"] == alerts,
                  f"{path}: PrometheusRule differs from alerts.yml; run scripts/prometheus_rule.py")
        # An overlay makes its namespace (before anything in it), and dev
        # generates its Secrets.
        if "overlays" in path:
            check("Namespace" in kinds, f"{path}: the overlay does not create its namespace")
        if "overlays_dev" in path:
            check("minishop-secrets" in {n.rsplit("-", 1)[0] for n in kinds.get("Secret", {})},
                  f"{path}: the dev overlay does not generate minishop-secrets")
        for kind in ("StatefulSet",):
            check(kind not in kinds, f"{path}: {kind} found: Kafka and PostgreSQL are existing services, not ours")
        print(f"k8s {pathlib.Path(path).name}: {sum(len(v) for v in kinds.values())} objects")


def workflow_rules() -> None:
    wf = load(".github/workflows/ci.yml")
    jobs = wf["jobs"]
    runs = {name: " ".join(str(s.get("run", "")) + " " + str(s.get("uses", "")) + " " + str(s.get("with", ""))
                           for s in job.get("steps", [])) for name, job in jobs.items()}
    everything = " ".join(runs.values())
    ci_run = (ROOT / ".ci/run").read_text()
    # Every step .ci/run takes, the workflow takes too.
    for step in ["make lint", "make up", "./test-system.sh", "make seed", "make test"]:
        check(step in ci_run, f".ci/run no longer runs {step}")
        check(step in everything, f"workflow: does not run {step} as .ci/run does")
    # PostgreSQL and Redis as service containers wherever the stack runs (a
    # runner's own PostgreSQL is stopped and wants a password), and the
    # broker's 20-minute build cached.
    for name in ("test", "smoke"):
        job = jobs.get(name, {})
        check({"postgres", "redis"} <= set(job.get("services", {})),
              f"workflow: the {name} job lacks PostgreSQL or Redis service containers")
        check(any("nisshi" in str((step.get("with") or {}).get("path", "")) for step in job.get("steps", [])),
              f"workflow: the {name} job does not cache the broker")
    check("cargo deny check advisories" in everything, "workflow: no cargo deny advisories check")
    check("aquasec/trivy" in str(jobs.get("images")) and "--exit-code 1" in runs.get("images", ""),
          "workflow: images are not scanned with Trivy (failing on findings)")
    # Every action pinned by a full commit SHA.
    for name, job in jobs.items():
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                check(re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses) is not None,
                      f"workflow: {name} uses {uses}, not pinned by commit SHA")
    # The images: built in one job (one build of the workspace), pushed to
    # GHCR on push events, tagged with the commit's SHA.
    images = jobs.get("images", {})
    check("matrix" not in (images.get("strategy") or {}), "workflow: images are built once per service (a matrix)")
    builds = [s.get("with", {}) for s in images.get("steps", []) if "build-push-action" in str(s.get("uses", ""))]
    built = {str(b.get("build-args", "")).removeprefix("SERVICE=") for b in builds}
    check(built == set(APPS), f"workflow: the images job builds {sorted(built)}, not the five services and web")
    for b in builds:
        check("ghcr.io" in str(b.get("tags", "")) + str(images.get("env", {})) and "github.sha" in str(b.get("tags", "")),
              "workflow: an image is not tagged ghcr.io/...:<commit SHA>")
        check(str(b.get("push", "")).strip() not in ("", "false"), "workflow: the images are never pushed")
    check(images.get("permissions", {}).get("packages") == "write", "workflow: the images job cannot push to GHCR")
    dependabot = load(".github/dependabot.yml")
    ecosystems = {u["package-ecosystem"] for u in dependabot.get("updates", [])}
    check({"cargo", "github-actions", "docker"} <= ecosystems, f"dependabot: updates {sorted(ecosystems)}, not cargo, actions and docker")
    print(f"workflow: {len(jobs)} jobs mirror .ci/run")


compose_rules()
dockerfile_rules()
logging_rules()
k8s_rules(sys.argv[1:])
workflow_rules()
if problems:
    print("\n".join(f"  ✗ {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
