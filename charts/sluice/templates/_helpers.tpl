{{/* Names, labels and the pieces both Deployments share. */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "sluice.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "sluice.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: api, consumer, migrate, maintain. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The HPA/KEDA guard (PostHog's chart does the same): two autoscalers on one Deployment
fight over its replica count, so the render fails instead.
*/}}
{{- define "sluice.validate" -}}
{{- if and .Values.consumer.autoscaling.enabled .Values.consumer.keda.enabled }}
{{- fail "consumer.autoscaling.enabled and consumer.keda.enabled both scale the consumer Deployment: enable one (KEDA creates its own HPA)" }}
{{- end }}
{{- if and .Values.consumer.keda.enabled (not .Values.consumer.enabled) }}
{{- fail "consumer.keda.enabled needs consumer.enabled" }}
{{- end }}
{{- if and .Values.consumer.enabled (not .Values.secrets.amqpUrl.name) }}
{{- fail "consumer.enabled needs secrets.amqpUrl.name: the consumer reads AMQP_URL" }}
{{- end }}
{{- end }}

{{/* Checksums of everything the pods read at start: a change rolls them. */}}
{{- define "sluice.configChecksum" -}}
{{- $config := include (print $.Template.BasePath "/configmap.yaml") . }}
{{- $config | sha256sum }}
{{- end }}

{{/* The environment of every Sluice container: settings by ConfigMap, secrets by reference. */}}
{{- define "sluice.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.databaseUrl.name }}
      key: {{ .Values.secrets.databaseUrl.key }}
- name: SLUICE_PRIVACY_PSEUDONYM_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.pseudonymKey.name }}
      key: {{ .Values.secrets.pseudonymKey.key }}
{{- with .Values.secrets.previousKeys }}
{{- if .name }}
- name: SLUICE_PRIVACY_PREVIOUS_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- with .Values.secrets.adminToken }}
{{- if .name }}
- name: SLUICE_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- if .Values.secrets.amqpUrl.name }}
- name: AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.amqpUrl.name }}
      key: {{ .Values.secrets.amqpUrl.key }}
{{- end }}
{{- end }}

{{/* Every SLUICE_* setting the chart sets: the ConfigMap's data, and the migration hook's
     env (a pre-install hook runs before the release's ConfigMap exists). */}}
{{- define "sluice.settings" -}}
SLUICE_ENV: {{ .Values.environment | quote }}
SLUICE_HOST: "0.0.0.0"
SLUICE_PORT: {{ .Values.api.port | quote }}
SLUICE_AMQP_HEALTH_PORT: {{ .Values.consumer.healthPort | quote }}
SLUICE_LOG_LEVEL: {{ .Values.logLevel | quote }}
{{- /* The CronJob runs upkeep: the service processes must not also run it hourly. */}}
SLUICE_DB_MAINTENANCE_IN_PROCESS: {{ not .Values.maintenance.enabled | quote }}
{{- if .Values.privacy.policy }}
SLUICE_PRIVACY_POLICY_FILE: /etc/sluice/policy/policy.yaml
{{- end }}
{{- if .Values.contracts.files }}
SLUICE_CONTRACTS_DIR: /etc/sluice/contracts
{{- end }}
{{- range $name, $value := .Values.settings }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{- define "sluice.envFrom" -}}
- configMapRef:
    name: {{ include "sluice.fullname" . }}-settings
{{- end }}

{{- define "sluice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Writable paths of a read-only root filesystem, and the mounted policy and contracts. */}}
{{- define "sluice.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.privacy.policy }}
- name: policy
  mountPath: /etc/sluice/policy
  readOnly: true
{{- end }}
{{- if .Values.contracts.files }}
- name: contracts
  mountPath: /etc/sluice/contracts
  readOnly: true
{{- end }}
{{- end }}

{{- define "sluice.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.privacy.policy }}
- name: policy
  configMap:
    name: {{ include "sluice.fullname" . }}-policy
{{- end }}
{{- if .Values.contracts.files }}
- name: contracts
  configMap:
    name: {{ include "sluice.fullname" . }}-contracts
    items:
      {{- range $file, $_ := .Values.contracts.files }}
      - key: {{ $file | replace "/" "--" }}
        path: {{ $file }}
      {{- end }}
{{- end }}
{{- end }}

{{/* Pod-level settings both Deployments, the Job and the CronJob share. */}}
{{- define "sluice.podCommon" -}}
serviceAccountName: {{ include "sluice.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- include "sluice.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* Spread across zones and nodes (soft: a small cluster still schedules). */}}
{{- define "sluice.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .root.Values.topologySpread.maxSkew }}
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "sluice.selectorLabels" . | nindent 8 }}
  - maxSkew: {{ .root.Values.topologySpread.maxSkew }}
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "sluice.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end }}

{{/* Datadog autodiscovery: the agent scrapes /metrics as an OpenMetrics check. */}}
{{- define "sluice.datadogAnnotations" -}}
{{- if .root.Values.metrics.datadog.enabled }}
ad.datadoghq.com/sluice.checks: |
  {"openmetrics": {"instances": [{"openmetrics_endpoint": "http://%%host%%:{{ .port }}/metrics", "namespace": "sluice", "metrics": [".*"]}]}}
ad.datadoghq.com/sluice.logs: '[{"source": "python", "service": "sluice"}]'
{{- end }}
{{- end }}
