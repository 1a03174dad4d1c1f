"""Render and lint the Helm chart offline with helm-python-sdk (Helm's SDK; no helm binary).

usage: python3 tests/helm_chart.py CHART_DIR VALUES_JSON NAMESPACE
prints {"manifests": {template: text}, "lint": {...}} as JSON.
"""
import json
import sys

import helm_python as helm

chart_dir, values_json, namespace = sys.argv[1], sys.argv[2], sys.argv[3]
values = json.loads(values_json)
chart = helm.Chart.load(chart_dir)
manifests = chart.render(values, name="volsync-dr", namespace=namespace, is_install=True)
report = helm.lint(chart_dir, values, strict=True, namespace=namespace, kube_version="v1.32.0")
print(json.dumps({"manifests": manifests, "lint": report}))
