#!/usr/bin/env python3
"""Prints deploy/prometheus/alerts.yml as a Prometheus Operator
PrometheusRule, for deploy/k8s/components/prometheus-operator:

    python3 scripts/prometheus_rule.py > deploy/k8s/components/prometheus-operator/prometheus-rule.yaml

The rules are written once, in alerts.yml (promtool tests them); this is
their Kubernetes form, and scripts/deploy_policy.py fails when it differs.
"""
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rule() -> dict:
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "minishop"},
        "spec": {"groups": alerts["groups"]},
    }


if __name__ == "__main__":
    sys.stdout.write("# Rendered from deploy/prometheus/alerts.yml by scripts/prometheus_rule.py: edit\n"
                     "# that file, then run this script again.\n")
    yaml.safe_dump(rule(), sys.stdout, sort_keys=False, width=100)
