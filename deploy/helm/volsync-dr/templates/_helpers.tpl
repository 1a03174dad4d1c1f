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
