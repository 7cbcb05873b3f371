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
