{{/* Labels on every object: the same app.kubernetes.io/name the kustomize base uses, plus Helm's own. */}}
{{- define "volsync-dr.labels" -}}
app.kubernetes.io/name: volsync-dr
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "volsync-dr.peerKubeconfigSecret" -}}
{{- default (printf "volsync-dr-peer-%s" (required "peerName is required" .Values.peerName)) .Values.peerKubeconfigSecret -}}
{{- end -}}

{{/* "true" when the Prometheus Operator objects are rendered: monitoring.enabled true, or "auto"
and the cluster serves PrometheusRule. */}}
{{- define "volsync-dr.monitoring" -}}
{{- $enabled := toString .Values.monitoring.enabled -}}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule")) -}}
true
{{- end -}}
{{- end -}}
