{{- define "dc.name" -}}{{ .Release.Name }}{{- end -}}
{{- define "dc.labels" -}}
app.kubernetes.io/name: dovetail-coordinator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "dc.selector" -}}
app.kubernetes.io/name: dovetail-coordinator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The series selector of this release's coordinators in alert expressions:
the ServiceMonitor's scrape job is named after the headless service. */}}
{{- define "dc.promSelector" -}}
{{- if .Values.prometheusRule.selector -}}
{{ .Values.prometheusRule.selector }}
{{- else -}}
job="{{ include "dc.name" . }}",namespace="{{ .Release.Namespace }}"
{{- end -}}
{{- end -}}

{{/* Checks values.schema.json cannot express (relations between values). */}}
{{- define "dc.validate" -}}
{{- /* int: a values file gives float64, --set int64. */ -}}
{{- $raft := int .Values.ports.raft -}}
{{- $http := int .Values.ports.http -}}
{{- $gossip := int .Values.ports.gossip -}}
{{- if or (eq $raft $http) (eq $raft $gossip) (eq $http $gossip) -}}
{{- fail (printf "ports: raft (%d), http (%d) and gossip (%d) must be three different ports" $raft $http $gossip) -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled .Values.apiTLS.insecure .Values.serviceMonitor.bearerTokenSecret.name -}}
{{- fail "serviceMonitor.bearerTokenSecret: an insecure API (apiTLS.insecure) checks no token; leave the secret name empty" -}}
{{- end -}}
{{- end -}}
