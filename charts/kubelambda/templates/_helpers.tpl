{{/* Names and labels shared by every template of the chart. */}}

{{- define "kubelambda.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubelambda.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component (operator or gateway): stable across upgrades. */}}
{{- define "kubelambda.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kubelambda.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kubelambda.gatewayURL" -}}
{{- printf "http://%s-gateway.%s.svc" (include "kubelambda.fullname" .) .Release.Namespace -}}
{{- if ne (int .Values.gateway.service.port) 80 -}}:{{ .Values.gateway.service.port }}{{- end -}}
{{- end -}}

{{/* The hardened container security context both components run with. */}}
{{- define "kubelambda.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The broker that keeps accepted asynchronous events: "true" when there is one (installed
by this chart, or an existing NATS at nats.url). */}}
{{- define "kubelambda.broker" -}}
{{- if and .Values.nats.install .Values.nats.url -}}
{{- fail "nats.install and nats.url exclude each other: install a NATS (nats.install: true) or name yours (nats.install: false, nats.url)" -}}
{{- end -}}
{{- if or .Values.nats.install .Values.nats.url -}}true{{- end -}}
{{- end -}}

{{- define "kubelambda.natsURL" -}}
{{- if .Values.nats.install -}}
{{- printf "nats://%s-nats.%s.svc:%d" (include "kubelambda.fullname" .) .Release.Namespace (int .Values.nats.port) -}}
{{- else -}}
{{- .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the broker's client credentials: keys user and password, or token. */}}
{{- define "kubelambda.natsCredentials" -}}
{{- if .Values.nats.install -}}
{{- printf "%s-nats" (include "kubelambda.fullname" .) -}}
{{- else -}}
{{- .Values.nats.credentialsSecret -}}
{{- end -}}
{{- end -}}

{{/* How the gateway and the dispatchers reach the broker (environment of their containers). */}}
{{- define "kubelambda.natsEnv" -}}
- name: KUBELAMBDA_NATS_URL
  value: {{ include "kubelambda.natsURL" . | quote }}
{{- $secret := include "kubelambda.natsCredentials" . }}
{{- if $secret }}
{{- range $key, $env := dict "user" "KUBELAMBDA_NATS_USER" "password" "KUBELAMBDA_NATS_PASSWORD" "token" "KUBELAMBDA_NATS_TOKEN" }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $key }}, optional: true}
{{- end }}
{{- end }}
{{- end -}}

{{/* The stream's configuration: the gateway and every dispatcher write it when they connect,
so all of them get the same flags. */}}
{{- define "kubelambda.streamArgs" -}}
{{- $stream := .Values.nats.stream -}}
{{- $replicas := $stream.replicas | default (ternary (min (int .Values.nats.replicas) 3) 1 .Values.nats.install) -}}
- --nats-replicas={{ $replicas }}
- --nats-max-age={{ $stream.maxAgeSeconds }}
- --nats-max-bytes={{ int64 $stream.maxBytes }}
- --nats-max-message-bytes={{ int64 .Values.nats.maxPayload }}
{{- end -}}

{{- define "kubelambda.natsImage" -}}
{{- printf "%s:%s" .Values.nats.image.repository .Values.nats.image.tag -}}
{{- end -}}
